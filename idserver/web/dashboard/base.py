"""
The parts every dashboard page shares: the services it works with, the signed-in
check, the admin check, CSRF, the page layout and the audit record.

A page is a method of a L{DashboardPages} subclass. It starts with
L{DashboardPages.viewer} (or L{DashboardPages.admin} on admin pages), which
returns the signed-in L{Viewer} or the response to send instead: a
redirect to the login page, or 403 for a non-admin. POST handlers then call
L{DashboardPages.check_form}, which checks the CSRF token.
L{DashboardPages.viewer_post}, L{DashboardPages.admin_form} and
L{DashboardPages.admin_post} do these steps in one call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from idserver.auth import LoginService
from idserver.config import LDAPConfig
from idserver.interfaces import IAuditLog, IClientRegistry, IDirectory, ISessionStore
from idserver.model import User
from idserver.sessions.model import BrowserSession
from idserver.web.csrf import check_csrf, csrf_input
from idserver.web.dashboard.html import Child, element, join
from idserver.web.login import request_form
from idserver.web.request import SECURITY_HEADERS, client_address
from idserver.web.session import SessionManager
from idserver.web.templates import Markup, render

__all__ = [
    "DashboardContext",
    "DashboardPages",
    "Viewer",
    "done_notice",
    "form_flag",
    "form_lines",
    "form_value",
]

_T = TypeVar("_T")

#: The entry point recorded in audit events of the dashboard.
ENTRY_POINT = "web"

#: The site's Content-Security-Policy with form-action added: every form of
#: the dashboard posts to this server, which the login pages' form_post
#: response mode cannot promise.
DASHBOARD_POLICY = (
    SECURITY_HEADERS[b"Content-Security-Policy"] + b"; form-action 'self'"
)


@dataclass
class DashboardContext:
    """
    The services the dashboard pages use.

    @ivar audit: the audit log (the SQLite directory provides it too).
    @ivar store: the session store, for app sessions and ending sessions.
    @ivar sessions: the browser sessions of the login pages, shared so one
        cookie signs in to both.
    @ivar logins: checks the current password with the shared rate limits.
    @ivar issuer: returns the OpenID Connect issuer URL.
    @ivar public_url: the server's public URL, for the LDAP client settings.
    @ivar ldap: the C{[ldap]} configuration, or C{None} when unknown.
    """

    directory: IDirectory
    audit: IAuditLog
    store: ISessionStore
    sessions: SessionManager
    clients: IClientRegistry
    logins: LoginService
    clock: IReactorTime
    issuer: Callable[[], str]
    public_url: str
    ldap: LDAPConfig | None = None


@dataclass(frozen=True)
class Viewer:
    """
    The signed-in user of a request, with the session and the settings read
    for this request.
    """

    session: BrowserSession
    user: User
    settings: Mapping[str, Any]

    @property
    def server_name(self) -> str:
        return str(self.settings.get("name") or "idserver")


def done_notice(request: IRequest, notices: Mapping[str, str]) -> str | None:
    """
    Return the notice that the one C{done} query argument names, or C{None}
    when it is missing, repeated or unknown.
    """
    codes = (request.args or {}).get(b"done", [])
    if len(codes) != 1:
        return None
    return notices.get(codes[0].decode("ascii", "replace"))


def form_value(form: Mapping[str, Sequence[str]], name: str) -> str:
    """
    Return the one value of C{name}, or an empty string when it is missing
    or repeated.
    """
    values = form.get(name, [])
    return values[0] if len(values) == 1 else ""


def form_flag(form: Mapping[str, Sequence[str]], name: str) -> bool:
    """
    Return whether a checkbox built by L{idserver.web.dashboard.html.checkbox}
    was checked: its values then include C{true}.
    """
    return "true" in form.get(name, [])


def form_lines(text: str) -> list[str]:
    """
    Split the text of a multi-line input into its non-empty lines, stripped.
    """
    return [line.strip() for line in text.splitlines() if line.strip()]


# The navigation: (path, label, admin only).
NAVIGATION: tuple[tuple[str, str, bool], ...] = (
    ("/", "Apps", False),
    ("/account/profile", "Profile", False),
    ("/account/security", "Password & 2FA", False),
    ("/account/sessions", "App sessions", False),
    ("/admin/users", "Users", True),
    ("/admin/groups", "Groups", True),
    ("/admin/clients", "OpenID clients", True),
    ("/admin/ldap", "LDAP server", True),
    ("/admin/settings", "Settings", True),
    ("/admin/audit", "Audit log", True),
)


def _navigation(viewer: Viewer, section: str) -> Markup:
    def link(path: str, label: str) -> Markup:
        current = "page" if path == section else None
        return element("li", element("a", label, href=path, aria_current=current))

    user_links = [link(p, label) for p, label, admin in NAVIGATION if not admin]
    admin_links = [link(p, label) for p, label, admin in NAVIGATION if admin]
    parts = [element("ul", user_links)]
    if viewer.user.is_admin:
        parts.append(element("p", "Administration", class_="nav-heading"))
        parts.append(element("ul", admin_links))
    return element("nav", parts, class_="sidebar", aria_label="Dashboard")


class DashboardPages:
    """
    The base of each group of dashboard routes.
    """

    log = Logger()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        app = cls.__dict__.get("app")
        if isinstance(app, Klein):
            # Werkzeug redirects a path with doubled slashes to an absolute
            # URL built from the Host header, which the client chooses, so
            # such a path gets 404 instead.
            app.url_map.merge_slashes = False

    def __init__(self, context: DashboardContext) -> None:
        self.context = context
        self.directory = context.directory

    # Who is asking

    async def viewer(self, request: IRequest) -> Viewer | bytes:
        """
        Return the signed-in viewer, or the redirect to the login page
        (which comes back here afterwards).
        """
        current = await self.context.sessions.signed_in(request)
        if current is None:
            return self._to_login(request)
        session, user = current
        settings = await self.directory.get_settings()
        return Viewer(session, user, settings)

    async def admin(self, request: IRequest) -> Viewer | bytes:
        """
        Return the signed-in viewer if an admin, else the login redirect or
        a 403 page.
        """
        viewer = await self.viewer(request)
        if isinstance(viewer, Viewer) and not viewer.user.is_admin:
            request.setResponseCode(403)
            return self.page(
                request,
                viewer,
                "Forbidden",
                element(
                    "p",
                    "This page is for administrators. Your account does not have"
                    " the admin role.",
                    class_="alert alert-error",
                ),
                section="",
            )
        return viewer

    def _to_login(self, request: IRequest) -> bytes:
        # A form sent after the session ended cannot be replayed after the
        # login, so the login of a POST returns to the home page.
        return_to = "/"
        if request.method in (b"GET", b"HEAD"):
            return_to = request.uri.decode("utf-8", "replace")
        return self.redirect(request, "/login?" + urlencode({"return_to": return_to}))

    async def viewer_post(
        self, request: IRequest
    ) -> tuple[Viewer, dict[str, list[str]]] | bytes:
        """
        Check the signed-in viewer and the form's CSRF token of a POST.

        @return: the viewer and the form, or the response to send instead
            (login redirect or expired form).
        """
        viewer = await self.viewer(request)
        if not isinstance(viewer, Viewer):
            return viewer
        form = self.check_form(request, viewer)
        if form is None:
            return self.expired_form(request, viewer)
        return viewer, form

    async def admin_form(
        self, request: IRequest
    ) -> tuple[Viewer, dict[str, list[str]]] | bytes:
        """
        Check the admin and the form's CSRF token of a POST.

        @return: the admin viewer and the form, or the response to send
            instead (login redirect, 403 or expired form).
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        form = self.check_form(request, viewer)
        if form is None:
            return self.expired_form(request, viewer)
        return viewer, form

    async def admin_post(
        self,
        request: IRequest,
        load: Callable[[str], Awaitable[_T | None]],
        key: str,
        missing: str,
    ) -> tuple[Viewer, dict[str, list[str]], _T] | bytes:
        """
        Check the admin, the form's CSRF token and the object a POST names.

        @param load: returns the object with the id C{key}, or C{None}.
        @param missing: the 404 message when C{load} returns C{None}.
        @return: the viewer, the form and the object, or the response to
            send instead (login redirect, 403, expired form or 404).
        """
        posted = await self.admin_form(request)
        if isinstance(posted, bytes):
            return posted
        viewer, form = posted
        found = await load(key)
        if found is None:
            return self.not_found(request, viewer, missing)
        return viewer, form, found

    def check_form(
        self, request: IRequest, viewer: Viewer
    ) -> dict[str, list[str]] | None:
        """
        Return the submitted form if it carries the session's CSRF token,
        else C{None} (the caller sends L{expired_form}).
        """
        form = request_form(request)
        if not check_csrf(viewer.session, form):
            return None
        return form

    def expired_form(self, request: IRequest, viewer: Viewer) -> bytes:
        request.setResponseCode(403)
        return self.page(
            request,
            viewer,
            "Form expired",
            element(
                "p",
                "The form has expired or did not come from this page. Open the"
                " page again and resend it.",
                class_="alert alert-error",
                role="alert",
            ),
            section="",
        )

    def not_found(self, request: IRequest, viewer: Viewer, what: str) -> bytes:
        request.setResponseCode(404)
        return self.page(
            request,
            viewer,
            "Not found",
            element("p", what, class_="alert alert-error", role="alert"),
            section="",
        )

    # Responses

    def redirect(self, request: IRequest, location: str) -> bytes:
        """
        Send a 303 redirect, so the browser follows a POST with a GET.
        """
        request.setResponseCode(303)
        request.setHeader(b"Location", location.encode("utf-8"))
        request.setHeader(b"Cache-Control", b"no-store")
        return b""

    def csrf(self, viewer: Viewer) -> Markup:
        return csrf_input(viewer.session)

    def post_form(
        self,
        viewer: Viewer,
        action: str,
        *children: Child,
        submit: str | None = "Save",
        button_class: str = "primary",
        class_: str = "stack",
        **attributes: Any,
    ) -> Markup:
        """
        Build a POST form that carries the CSRF token.
        """
        button = (
            element("button", submit, type="submit", class_=button_class)
            if submit
            else None
        )
        return element(
            "form",
            self.csrf(viewer),
            *children,
            element("div", button, class_="actions") if button else None,
            method="post",
            action=action,
            class_=class_,
            **attributes,
        )

    def page(
        self,
        request: IRequest,
        viewer: Viewer,
        title: str,
        *body: Child,
        section: str,
        notice: str | None = None,
    ) -> bytes:
        """
        Render a page in the dashboard layout.

        @param section: the navigation path to mark as current.
        @param notice: a confirmation shown above the content.
        """
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Security-Policy", DASHBOARD_POLICY)
        notice_markup = (
            element("p", notice, class_="alert alert-ok", role="status")
            if notice
            else ""
        )
        user = viewer.user
        page = render(
            "dashboard/base.html",
            title=f"{title} · {viewer.server_name}",
            server_name=viewer.server_name,
            heading=title,
            navigation=_navigation(viewer, section),
            username=user.display_name or user.username,
            role="admin" if user.is_admin else "",
            csrf=self.csrf(viewer),
            notice=notice_markup,
            body=join(*body),
        )
        return page.encode("utf-8")

    # Audit

    async def record(
        self,
        request: IRequest,
        viewer: Viewer,
        kind: str,
        subject: str | None,
        detail: str = "",
        *,
        outcome: str = "success",
    ) -> None:
        """
        Record a change made in the dashboard in the audit log. C{detail}
        must never contain a secret.
        """
        address = client_address(request)
        await self.context.audit.record(
            kind,
            outcome,
            entry_point=ENTRY_POINT,
            actor=viewer.user.username,
            subject=subject,
            address=address,
            detail=detail,
        )
        if outcome == "success":
            self.log.info(
                "{actor} made the change {kind} on {subject} from {address}",
                actor=viewer.user.username,
                kind=kind,
                subject=subject,
                address=address,
            )
        else:
            self.log.info(
                "{actor} failed to make the change {kind} on {subject} from"
                " {address}: {detail}",
                actor=viewer.user.username,
                kind=kind,
                subject=subject,
                address=address,
                detail=detail,
            )
