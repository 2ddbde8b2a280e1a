"""
The tables of a user's app sessions and signed-in browsers, with their
revoke buttons, shared by the user's own page and the admin's user page.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from idserver.model import User
from idserver.sessions.model import SessionState
from idserver.web.dashboard.base import DashboardPages, Viewer
from idserver.web.dashboard.html import data_table, element, format_time, hidden
from idserver.web.templates import Markup

__all__ = ["SessionListing"]


class SessionListing(DashboardPages):
    """
    Lists and ends the app sessions and browser sessions of a user.
    """

    async def sessions_tables(
        self, viewer: Viewer, user: User, action_base: str, *, heading: str = "h2"
    ) -> Markup:
        """
        Build the tables of C{user}'s app sessions and browser sessions,
        with revoke buttons posting to C{action_base}C{/revoke} and
        C{action_base}C{/signout}.

        @param heading: the element of the tables' headings, one level below
            the heading of the section they are in.
        """
        store = self.context.store
        grants = await store.grants_of(user.id)
        names: dict[str, str] = {}
        for grant in grants:
            if grant.client_id not in names:
                client = await self.context.clients.get_client(grant.client_id)
                names[grant.client_id] = (
                    client.name if client is not None else grant.client_id
                )
        if grants:
            rows = [
                element(
                    "tr",
                    element("td", names[grant.client_id], data_label="App"),
                    element("td", format_time(grant.created_at), data_label="Granted"),
                    element("td", format_time(grant.last_used), data_label="Last used"),
                    element("td", " ".join(grant.scope), data_label="Scopes"),
                    element(
                        "td",
                        self.post_form(
                            viewer,
                            f"{action_base}/revoke",
                            hidden("grant", grant.id),
                            submit="Revoke",
                            button_class="danger small",
                            class_="inline",
                            aria_label=f"Revoke {names[grant.client_id]}",
                        ),
                        class_="actions-cell",
                    ),
                )
                for grant in grants
            ]
            grant_table: Markup = data_table(
                ("App", "Granted", "Last used", "Scopes", ""),
                rows,
                class_="table",
                id="app-sessions",
            )
        else:
            grant_table = element("p", "No app sessions.", class_="empty")

        browsers = [
            s
            for s in await store.sessions_of(user.id)
            if s.state == SessionState.active
        ]
        browser_rows = []
        for browser in browsers:
            this_one = browser.key == viewer.session.key
            action = (
                element("span", "This browser", class_="badge")
                if this_one
                else self.post_form(
                    viewer,
                    f"{action_base}/signout",
                    hidden("sid", browser.sid),
                    submit="Sign out",
                    button_class="danger small",
                    class_="inline",
                )
            )
            browser_rows.append(
                element(
                    "tr",
                    element(
                        "td",
                        _browser_name(browser.user_agent),
                        data_label="Browser",
                    ),
                    element("td", browser.address or "—", data_label="Address"),
                    element(
                        "td", format_time(browser.created_at), data_label="Signed in"
                    ),
                    element(
                        "td", format_time(browser.last_seen), data_label="Last seen"
                    ),
                    element("td", action, class_="actions-cell"),
                )
            )
        if browser_rows:
            browser_table: Markup = data_table(
                ("Browser", "Address", "Signed in", "Last seen", ""),
                browser_rows,
                class_="table",
                id="browser-sessions",
            )
        else:
            browser_table = element("p", "No signed-in browsers.", class_="empty")
        return element(
            "div",
            element(heading, "Apps"),
            grant_table,
            element(heading, "Signed-in browsers"),
            browser_table,
        )

    async def revoke_user_grant(
        self, request: IRequest, viewer: Viewer, user: User, grant_id: str
    ) -> bool:
        """
        Revoke the grant C{grant_id} if it belongs to C{user}; return
        whether it did.
        """
        store = self.context.store
        grant = await store.get_grant(grant_id) if grant_id else None
        if grant is None or grant.user_id != user.id:
            return False
        await store.revoke_grant(grant.id)
        await self.record(
            request, viewer, "grant.revoke", user.username, f"client {grant.client_id}"
        )
        return True

    async def sign_out_user_browser(
        self, request: IRequest, viewer: Viewer, user: User, sid: str
    ) -> bool:
        """
        End the browser session C{sid} of C{user}; return whether there was
        one.
        """
        if not sid or not await self.context.store.delete_session_by_sid(user.id, sid):
            return False
        await self.record(request, viewer, "session.end", user.username)
        return True


def _browser_name(user_agent: str) -> str:
    """
    Name the browser of a C{User-Agent} header in a word or two, for the
    list of sessions.
    """
    for token, name in (
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("HeadlessChrome/", "Chromium (headless)"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ):
        if token in user_agent:
            system = next(
                (
                    label
                    for key, label in (
                        ("Android", "Android"),
                        ("iPhone", "iPhone"),
                        ("iPad", "iPad"),
                        ("Windows", "Windows"),
                        ("Mac OS X", "macOS"),
                        ("Linux", "Linux"),
                    )
                    if key in user_agent
                ),
                None,
            )
            return f"{name} on {system}" if system else name
    return user_agent[:60] or "Unknown browser"
