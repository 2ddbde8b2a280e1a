"""
The admin audit log page: logins, failed logins, 2FA changes and admin
changes, newest first, filtered by user and by type.
"""

from __future__ import annotations

from urllib.parse import urlencode

from klein import Klein
from twisted.web.iweb import IRequest

from idserver.model import AuditEvent
from idserver.web.dashboard.base import DashboardPages, Viewer
from idserver.web.dashboard.html import (
    FormState,
    data_table,
    element,
    format_time,
    select,
)
from idserver.web.templates import Markup

__all__ = ["EVENT_TYPES", "AuditPages"]

PAGE_SIZE = 50

# The highest page number the page accepts, because the offset of a much
# larger one does not fit in SQLite's 64-bit integers.
MAX_PAGE = 1_000_000

#: The type filter: a prefix of the event kind, and its label. The log's
#: filter matches a kind by prefix, so C{login} also finds C{login.failed}.
EVENT_TYPES: tuple[tuple[str, str], ...] = (
    ("", "All events"),
    ("login", "Logins and failed logins"),
    ("login.failed", "Failed logins"),
    ("totp", "2FA changes by users"),
    ("user.totp", "2FA changes by admins"),
    ("password", "Password changes and confirmations by users"),
    ("profile", "Profile changes by users"),
    ("user", "User changes"),
    ("group", "Group changes"),
    ("client", "OpenID client changes"),
    ("ldap_server", "LDAP server changes"),
    ("settings", "Settings changes"),
    ("grant", "Revoked app sessions"),
    ("session", "Signed-out browsers"),
)

_KNOWN_TYPES = {prefix for prefix, _ in EVENT_TYPES}


class AuditPages(DashboardPages):
    """
    The route C{/admin/audit}.
    """

    app = Klein()

    @app.route("/admin/audit", methods=["GET", "HEAD"])
    async def show(self, request: IRequest) -> bytes:
        """
        Show one page of audit events, filtered by C{user} and C{type}.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        args = {
            k.decode(): v[0].decode("utf-8", "replace")
            for k, v in (request.args or {}).items()
            if v
        }
        user = args.get("user", "").strip().lower() or None
        kind = args.get("type", "")
        if kind not in _KNOWN_TYPES:
            kind = ""
        try:
            page = min(max(1, int(args.get("page", "1"))), MAX_PAGE)
        except ValueError:
            page = 1
        # Reading one event more than a page shows whether a next page exists.
        events = await self.context.audit.events(
            user=user,
            kind=kind or None,
            offset=(page - 1) * PAGE_SIZE,
            limit=PAGE_SIZE + 1,
        )
        has_next = len(events) > PAGE_SIZE
        events = events[:PAGE_SIZE]

        state = FormState.of({"user": user or "", "type": kind})
        filters = element(
            "form",
            element(
                "div",
                element("label", "User", for_="user"),
                element(
                    "input",
                    type="search",
                    id="user",
                    name="user",
                    value=state.value("user"),
                    placeholder="username",
                    autocapitalize="none",
                ),
                class_="field",
            ),
            select(state, "type", "Type", EVENT_TYPES),
            element(
                "div", element("button", "Filter", type="submit"), class_="actions"
            ),
            method="get",
            action="/admin/audit",
            class_="filters card",
        )
        if events:
            table: Markup = data_table(
                (
                    "Time",
                    "Event",
                    "Outcome",
                    "User",
                    "Subject",
                    "Address",
                    "Via",
                    "Detail",
                ),
                [self._row(event) for event in events],
                class_="table audit",
                id="audit",
            )
        else:
            table = element("p", "No events match.", class_="empty")

        def link(number: int, label: str) -> Markup:
            params: dict[str, str | int] = {"page": number}
            if user:
                params["user"] = user
            if kind:
                params["type"] = kind
            return element("a", label, href="/admin/audit?" + urlencode(params))

        pager = element(
            "nav",
            link(page - 1, "← Newer") if page > 1 else None,
            element("span", f"Page {page}"),
            link(page + 1, "Older →") if has_next else None,
            class_="pager",
            aria_label="Pages",
        )
        return self.page(
            request, viewer, "Audit log", filters, table, pager, section="/admin/audit"
        )

    def _row(self, event: AuditEvent) -> Markup:
        outcome_class = (
            "badge badge-ok" if event.outcome == "success" else "badge badge-bad"
        )
        return element(
            "tr",
            element("td", format_time(event.time, seconds=True), data_label="Time"),
            element("td", element("code", event.kind), data_label="Event"),
            element(
                "td",
                element("span", event.outcome, class_=outcome_class),
                data_label="Outcome",
            ),
            element("td", event.actor or "—", data_label="User"),
            element("td", event.subject or "—", data_label="Subject"),
            element("td", event.address or "—", data_label="Address"),
            element("td", event.entry_point, data_label="Via"),
            element("td", event.detail, data_label="Detail"),
        )
