"""
The admin pages for users: list and search, create, edit, set a password,
reset 2FA, group memberships, sessions, delete.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from klein import Klein
from twisted.web.iweb import IRequest

from idserver.changes import check_external_fields
from idserver.errors import DirectoryError, HasherBusyError, NotFoundError
from idserver.model import Source, User
from idserver.validation import normalize_username
from idserver.web.dashboard.appsessions import SessionListing
from idserver.web.dashboard.base import Viewer, done_notice, form_flag, form_value
from idserver.web.dashboard.html import (
    FormState,
    checkbox,
    data_table,
    element,
    format_time,
    hidden,
    select,
    text_input,
)
from idserver.web.templates import Markup

__all__ = ["UserPages"]

PAGE_SIZE = 25

_NOTICES = {
    "created": "The user was created.",
    "saved": "The user was saved.",
    "password": "The password was set. The user's sessions and app sessions"
    " have ended.",
    "totp": "Two-factor authentication was reset. The user enrols again at"
    " the next login if it is mandatory.",
    "joined": "The user was added to the group.",
    "left": "The user was removed from the group.",
    "deleted": "The user was deleted. The username stays retired.",
    "revoked": "The app session was revoked.",
    "signed-out": "The browser session was signed out.",
}

ROLES = (("user", "User"), ("admin", "Admin"))
CREATE_FIELDS = (
    "username",
    "email",
    "display_name",
    "fallback_email",
    "role",
    "password",
    "confirm_password",
)
EDIT_FIELDS = ("email", "display_name", "fallback_email", "role", "active")


def _yes(value: bool) -> Markup:
    return element(
        "span", "yes" if value else "no", class_="badge badge-ok" if value else "badge"
    )


class UserPages(SessionListing):
    """
    The routes under C{/admin/users}.
    """

    app = Klein()

    async def _user(self, user_id: str) -> User | None:
        try:
            return await self.directory.get_user(user_id)
        except NotFoundError:
            return None

    # List

    @app.route("/admin/users", methods=["GET", "HEAD"])
    async def list_users(self, request: IRequest) -> bytes:
        """
        List users, PAGE_SIZE a page, optionally filtered by C{q}.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        args = {
            k.decode(): v[0].decode("utf-8", "replace")
            for k, v in (request.args or {}).items()
            if v
        }
        query = args.get("q", "").strip() or None
        try:
            page = max(1, int(args.get("page", "1")))
        except ValueError:
            page = 1
        total = await self.directory.count_users(query=query)
        pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
        page = min(page, pages)
        users = await self.directory.list_users(
            query=query, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )

        search = element(
            "form",
            element("label", "Search users", for_="q", class_="visually-hidden"),
            element(
                "input",
                type="search",
                id="q",
                name="q",
                value=query or "",
                placeholder="Username, email or name",
            ),
            element("button", "Search", type="submit"),
            method="get",
            action="/admin/users",
            class_="search",
            role="search",
        )
        toolbar = element(
            "div",
            search,
            element("a", "New user", href="/admin/users/new", class_="button primary"),
            class_="toolbar",
        )
        if users:
            rows = [self._row(user) for user in users]
            table: Markup = data_table(
                (
                    "Username",
                    "Name",
                    "Email",
                    "Role",
                    "Active",
                    "2FA",
                    "Source",
                ),
                rows,
                class_="table",
                id="users",
            )
        else:
            table = element("p", "No users match.", class_="empty")
        return self.page(
            request,
            viewer,
            "Users",
            toolbar,
            table,
            self._pager(query, page, pages, total),
            section="/admin/users",
            notice=done_notice(request, _NOTICES),
        )

    def _row(self, user: User) -> Markup:
        return element(
            "tr",
            element(
                "td",
                element("a", user.username, href=f"/admin/users/{user.id}"),
                data_label="Username",
            ),
            element("td", user.display_name or "—", data_label="Name"),
            element("td", user.email, data_label="Email"),
            element("td", user.role.value, data_label="Role"),
            element("td", _yes(user.active), data_label="Active"),
            element("td", _yes(user.totp_enabled), data_label="2FA"),
            element("td", user.source.value, data_label="Source"),
        )

    def _pager(self, query: str | None, page: int, pages: int, total: int) -> Markup:
        def link(number: int, label: str, rel: str) -> Markup:
            params: dict[str, Any] = {"page": number}
            if query:
                params["q"] = query
            return element(
                "a", label, href="/admin/users?" + urlencode(params), rel=rel
            )

        return element(
            "nav",
            link(page - 1, "← Previous", "prev") if page > 1 else None,
            element("span", f"Page {page} of {pages} · {total} users"),
            link(page + 1, "Next →", "next") if page < pages else None,
            class_="pager",
            aria_label="Pages",
        )

    # Create

    @app.route("/admin/users/new", methods=["GET", "HEAD"])
    async def new_user(self, request: IRequest) -> bytes:
        """
        Show the form that creates a user.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        return self._new_page(request, viewer, FormState.of({"role": "user"}))

    def _new_page(self, request: IRequest, viewer: Viewer, state: FormState) -> bytes:
        form = self.post_form(
            viewer,
            "/admin/users/new",
            state.summary(),
            text_input(
                state,
                "username",
                "Username",
                required=True,
                autocomplete="off",
                autocapitalize="none",
                spellcheck="false",
                hint="Lower case a-z, 0-9, '.', '-' and '_'. It can never change.",
            ),
            text_input(state, "email", "Email", type="email", required=True),
            text_input(state, "display_name", "Display name"),
            text_input(
                state, "fallback_email", "Fallback email", type="email", hint=None
            ),
            select(state, "role", "Role", ROLES),
            text_input(
                state,
                "password",
                "Password",
                type="password",
                autocomplete="new-password",
                keep_value=False,
                hint="Optional: without one, the user cannot sign in until a"
                " password is set.",
            ),
            text_input(
                state,
                "confirm_password",
                "Password again",
                type="password",
                autocomplete="new-password",
                keep_value=False,
            ),
            submit="Create user",
            class_="stack card",
        )
        return self.page(request, viewer, "New user", form, section="/admin/users")

    @app.route("/admin/users/new", methods=["POST"])
    async def create_user(self, request: IRequest) -> bytes:
        """
        Create a user from the form.
        """
        posted = await self.admin_form(request)
        if isinstance(posted, bytes):
            return posted
        viewer, form = posted
        state = FormState.of({name: form_value(form, name) for name in CREATE_FIELDS})
        password = state.value("password") or None
        state.values.pop("password")
        state.values.pop("confirm_password")
        if password is not None and password != form_value(form, "confirm_password"):
            state.add_error("confirm_password", "The passwords do not match.")
            request.setResponseCode(400)
            return self._new_page(request, viewer, state)

        username = state.value("username").strip()
        role = state.value("role") or "user"
        try:
            username = normalize_username(username)
            user = await self.directory.add_user(
                username,
                state.value("email"),
                display_name=state.value("display_name"),
                fallback_email=state.value("fallback_email").strip() or None,
                role=role,
                password=password,
            )
        except DirectoryError as error:
            state.fail(error, CREATE_FIELDS)
            await self.record(
                request, viewer, "user.add", username, str(error), outcome="failure"
            )
            request.setResponseCode(400)
            return self._new_page(request, viewer, state)
        except HasherBusyError:
            state.general.append("The server is busy. Please try again in a moment.")
            request.setResponseCode(503)
            return self._new_page(request, viewer, state)
        await self.record(
            request,
            viewer,
            "user.add",
            user.username,
            f"role {role}, {'with' if password else 'without'} a password",
        )
        return self.redirect(request, f"/admin/users/{user.id}?done=created")

    # Edit

    @app.route("/admin/users/<string:user_id>", methods=["GET", "HEAD"])
    async def show_user(self, request: IRequest, user_id: str) -> bytes:
        """
        Show a user with the forms that change it.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        user = await self._user(user_id)
        if user is None:
            return self.not_found(request, viewer, "There is no such user.")
        return await self._user_page(
            request, viewer, user, notice=done_notice(request, _NOTICES)
        )

    def _edit_state(self, user: User) -> FormState:
        return FormState.of(
            {
                "email": user.email,
                "display_name": user.display_name,
                "fallback_email": user.fallback_email,
                "role": user.role.value,
                "active": "true" if user.active else "false",
            }
        )

    async def _user_page(
        self,
        request: IRequest,
        viewer: Viewer,
        user: User,
        *,
        details: FormState | None = None,
        password: FormState | None = None,
        groups: FormState | None = None,
        notice: str | None = None,
    ) -> bytes:
        details = details or self._edit_state(user)
        password = password or FormState()
        groups = groups or FormState()
        base = f"/admin/users/{user.id}"
        external = user.source is Source.ldap

        facts = element(
            "dl",
            element("dt", "Id"),
            element("dd", element("code", user.id)),
            element("dt", "Source"),
            element("dd", user.source.value),
            element("dt", "2FA"),
            element("dd", "on" if user.totp_enabled else "off"),
            element("dt", "Password"),
            element("dd", "set" if user.has_password else "not set"),
            element("dt", "Created"),
            element("dd", format_time(user.created_at)),
            element("dt", "Password changed"),
            element("dd", format_time(user.password_changed_at)),
            class_="facts card",
        )
        external_note = (
            element(
                "p",
                "This user comes from the external directory: the email address"
                " and display name can only be changed there.",
                class_="alert alert-info",
            )
            if external
            else None
        )
        details_form = self.post_form(
            viewer,
            base,
            details.summary(),
            external_note,
            text_input(details, "display_name", "Display name", readonly=external),
            text_input(
                details,
                "email",
                "Email",
                type="email",
                required=True,
                readonly=external,
            ),
            text_input(
                details,
                "fallback_email",
                "Fallback email",
                type="email",
                hint="Leave empty for none.",
            ),
            select(details, "role", "Role", ROLES),
            checkbox(
                details,
                "active",
                "Active",
                hint="A disabled user cannot sign in; their sessions end.",
            ),
            submit="Save user",
            class_="stack card",
            id="user-details",
        )
        password_form = self.post_form(
            viewer,
            f"{base}/password",
            password.summary(),
            text_input(
                password,
                "password",
                "New password",
                type="password",
                required=True,
                autocomplete="new-password",
                keep_value=False,
            ),
            text_input(
                password,
                "confirm_password",
                "New password again",
                type="password",
                required=True,
                autocomplete="new-password",
                keep_value=False,
            ),
            submit="Set password",
            class_="stack card",
            id="user-password",
        )
        totp_reset = (
            self.post_form(
                viewer,
                f"{base}/totp-reset",
                element(
                    "p",
                    "Turns 2FA off and forgets the secret, for a user who lost"
                    " their authenticator.",
                ),
                submit="Reset 2FA",
                button_class="danger",
                class_="stack card",
                id="user-totp",
            )
            if user.totp_enabled
            else element("p", "2FA is off for this user.", class_="card muted")
        )
        body = [
            facts,
            element("h2", "Details"),
            details_form,
            element("h2", "Password"),
            password_form,
            element("h2", "Two-factor authentication"),
            totp_reset,
            element("h2", "Groups"),
            await self._groups_section(viewer, user, groups),
            element("h2", "Sessions"),
            await self.sessions_tables(viewer, user, base, heading="h3"),
            element("h2", "Delete"),
            element(
                "p",
                element(
                    "a",
                    "Delete this user…",
                    href=f"{base}/delete",
                    class_="button danger",
                ),
                class_="card",
            ),
        ]
        return self.page(
            request,
            viewer,
            f"User {user.username}",
            body,
            section="/admin/users",
            notice=notice,
        )

    async def _groups_section(
        self, viewer: Viewer, user: User, state: FormState
    ) -> Markup:
        base = f"/admin/users/{user.id}/groups"
        member_of = await self.directory.groups_of(user.id)
        items = []
        for group in member_of:
            remove = (
                self.post_form(
                    viewer,
                    f"{base}/remove",
                    hidden("group", group.id),
                    submit="Remove",
                    button_class="link small",
                    class_="inline",
                    aria_label=f"Remove from {group.name}",
                )
                if group.source is Source.local
                else element("span", "external", class_="badge")
            )
            items.append(
                element(
                    "li",
                    element("a", group.name, href=f"/admin/groups/{group.id}"),
                    remove,
                )
            )
        current = (
            element("ul", items, class_="chips")
            if items
            else element("p", "Not in any group.", class_="muted")
        )
        joined = {group.id for group in member_of}
        choices = [
            (group.id, group.name)
            for group in await self.directory.list_groups()
            if group.id not in joined and group.source is Source.local
        ]
        add = (
            self.post_form(
                viewer,
                f"{base}/add",
                state.summary(),
                select(state, "group", "Add to group", choices),
                submit="Add",
                class_="row",
            )
            if choices
            else None
        )
        return element("div", current, add, class_="card stack", id="user-groups")

    @app.route("/admin/users/<string:user_id>", methods=["POST"])
    async def save_user(self, request: IRequest, user_id: str) -> bytes:
        """
        Save the email addresses, display name, role and active state.
        """
        posted = await self.admin_post(
            request, self._user, user_id, "There is no such user."
        )
        if isinstance(posted, bytes):
            return posted
        viewer, form, user = posted

        state = FormState.of(
            {
                "email": form_value(form, "email"),
                "display_name": form_value(form, "display_name"),
                "fallback_email": form_value(form, "fallback_email"),
                "role": form_value(form, "role"),
                "active": "true" if form_flag(form, "active") else "false",
            }
        )
        email = state.value("email").strip()
        email_changed = email.lower() != user.email
        name = state.value("display_name")
        name_changed = " ".join(name.split()) != user.display_name
        active = form_flag(form, "active")
        changes = _describe(user, email_changed, name_changed, state, active)
        try:
            check_external_fields(
                user,
                email=email if email_changed else None,
                display_name=name if name_changed else None,
            )
            updated = await self.directory.update_user(
                user.id,
                email=email if email_changed else None,
                # An administrator set the address, so it counts as verified.
                email_verified=True if email_changed else None,
                display_name=name if name_changed else None,
                fallback_email=state.value("fallback_email").strip(),
                role=state.value("role") or None,
                active=active,
            )
        except DirectoryError as error:
            state.fail(error, EDIT_FIELDS)
            await self.record(
                request,
                viewer,
                "user.update",
                user.username,
                str(error),
                outcome="failure",
            )
            request.setResponseCode(400)
            return await self._user_page(request, viewer, user, details=state)
        if user.active and not updated.active:
            await self.context.store.end_user_sessions(user.id)
        await self.record(request, viewer, "user.update", user.username, changes)
        if user.id == viewer.user.id and not updated.is_admin:
            # An admin who gave up the role may no longer see this page.
            return self.redirect(request, "/")
        return self.redirect(request, f"/admin/users/{user.id}?done=saved")

    @app.route("/admin/users/<string:user_id>/password", methods=["POST"])
    async def set_password(self, request: IRequest, user_id: str) -> bytes:
        """
        Set a user's password and end the user's sessions.
        """
        posted = await self.admin_post(
            request, self._user, user_id, "There is no such user."
        )
        if isinstance(posted, bytes):
            return posted
        viewer, form, user = posted
        state = FormState()
        password = form_value(form, "password")
        if password != form_value(form, "confirm_password"):
            state.add_error("confirm_password", "The passwords do not match.")
        else:
            try:
                await self.directory.set_password(user.id, password)
            except DirectoryError as error:
                state.fail(error, ("password",))
            except HasherBusyError:
                state.general.append(
                    "The server is busy. Please try again in a moment."
                )
        if state.failed:
            request.setResponseCode(400)
            return await self._user_page(request, viewer, user, password=state)
        await self.context.store.end_user_sessions(user.id)
        await self.record(
            request,
            viewer,
            "user.password",
            user.username,
            "password set by an administrator",
        )
        if user.id == viewer.user.id:
            # The admin's own session ended with the others.
            return self.redirect(request, "/login")
        return self.redirect(request, f"/admin/users/{user.id}?done=password")

    @app.route("/admin/users/<string:user_id>/totp-reset", methods=["POST"])
    async def reset_totp(self, request: IRequest, user_id: str) -> bytes:
        """
        Turn a user's 2FA off.
        """
        posted = await self.admin_post(
            request, self._user, user_id, "There is no such user."
        )
        if isinstance(posted, bytes):
            return posted
        viewer, form, user = posted
        await self.directory.disable_totp(user.id)
        if viewer.settings.get("mandatory_2fa"):
            # Without 2FA the user must enrol before anything else.
            await self.context.store.end_user_sessions(user.id)
        await self.record(
            request, viewer, "user.totp_disable", user.username, "2FA turned off"
        )
        return self.redirect(request, f"/admin/users/{user.id}?done=totp")

    @app.route("/admin/users/<string:user_id>/groups/add", methods=["POST"])
    async def join_group(self, request: IRequest, user_id: str) -> bytes:
        """
        Add the user to a group.
        """
        return await self._membership(request, user_id, add=True)

    @app.route("/admin/users/<string:user_id>/groups/remove", methods=["POST"])
    async def leave_group(self, request: IRequest, user_id: str) -> bytes:
        """
        Remove the user from a group.
        """
        return await self._membership(request, user_id, add=False)

    async def _membership(self, request: IRequest, user_id: str, *, add: bool) -> bytes:
        posted = await self.admin_post(
            request, self._user, user_id, "There is no such user."
        )
        if isinstance(posted, bytes):
            return posted
        viewer, form, user = posted
        kind = "group.add_member" if add else "group.remove_member"
        state = FormState()
        try:
            group = await self.directory.get_group(form_value(form, "group"))
            if add:
                await self.directory.add_member(group.id, user.id)
            else:
                await self.directory.remove_member(group.id, user.id)
        except DirectoryError as error:
            state.fail(error, ("group",))
            await self.record(
                request, viewer, kind, user.username, str(error), outcome="failure"
            )
            request.setResponseCode(400)
            return await self._user_page(request, viewer, user, groups=state)
        await self.record(request, viewer, kind, group.name, user.username)
        done = "joined" if add else "left"
        return self.redirect(request, f"/admin/users/{user.id}?done={done}")

    # Sessions

    @app.route("/admin/users/<string:user_id>/revoke", methods=["POST"])
    async def revoke(self, request: IRequest, user_id: str) -> bytes:
        """
        Revoke one app session of the user.
        """
        return await self._end_session(
            request,
            user_id,
            self.revoke_user_grant,
            "grant",
            "There is no such app session.",
            "revoked",
        )

    @app.route("/admin/users/<string:user_id>/signout", methods=["POST"])
    async def sign_out(self, request: IRequest, user_id: str) -> bytes:
        """
        End one browser session of the user.
        """
        return await self._end_session(
            request,
            user_id,
            self.sign_out_user_browser,
            "sid",
            "There is no such browser session.",
            "signed-out",
        )

    async def _end_session(
        self,
        request: IRequest,
        user_id: str,
        end: Callable[[IRequest, Viewer, User, str], Awaitable[bool]],
        field: str,
        missing: str,
        done: str,
    ) -> bytes:
        """
        End the session of the user that the form field C{field} names.

        @param end: ends the session; returns C{False} if the user has no
            such session.
        @param missing: the 404 message for an unknown user or session.
        @param done: the notice code of the redirect.
        """
        posted = await self.admin_form(request)
        if isinstance(posted, bytes):
            return posted
        viewer, form = posted
        user = await self._user(user_id)
        if user is None or not await end(
            request, viewer, user, form_value(form, field)
        ):
            return self.not_found(request, viewer, missing)
        return self.redirect(request, f"/admin/users/{user.id}?done={done}")

    # Delete

    @app.route("/admin/users/<string:user_id>/delete", methods=["GET", "HEAD"])
    async def confirm_delete(self, request: IRequest, user_id: str) -> bytes:
        """
        Ask for confirmation before deleting a user.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        user = await self._user(user_id)
        if user is None:
            return self.not_found(request, viewer, "There is no such user.")
        return self._delete_page(request, viewer, user, FormState())

    def _delete_page(
        self, request: IRequest, viewer: Viewer, user: User, state: FormState
    ) -> bytes:
        body = [
            state.summary(),
            element(
                "p",
                f"Delete the user {user.username}? Their sessions and app"
                " sessions end, and the username can never be given to anyone"
                " else.",
            ),
            self.post_form(
                viewer,
                f"/admin/users/{user.id}/delete",
                element("a", "Cancel", href=f"/admin/users/{user.id}", class_="button"),
                submit="Delete user",
                button_class="danger",
                class_="row card",
            ),
        ]
        return self.page(
            request, viewer, f"Delete {user.username}", body, section="/admin/users"
        )

    @app.route("/admin/users/<string:user_id>/delete", methods=["POST"])
    async def delete_user(self, request: IRequest, user_id: str) -> bytes:
        """
        Delete a user and end their sessions.
        """
        posted = await self.admin_post(
            request, self._user, user_id, "There is no such user."
        )
        if isinstance(posted, bytes):
            return posted
        viewer, form, user = posted
        try:
            await self.directory.delete_user(user.id)
        except DirectoryError as error:
            state = FormState()
            state.general.append(error.message)
            await self.record(
                request,
                viewer,
                "user.delete",
                user.username,
                str(error),
                outcome="failure",
            )
            request.setResponseCode(400)
            return self._delete_page(request, viewer, user, state)
        await self.context.store.end_user_sessions(user.id)
        await self.record(request, viewer, "user.delete", user.username, user.id)
        if user.id == viewer.user.id:
            return self.redirect(request, "/login")
        return self.redirect(request, "/admin/users?done=deleted")


def _describe(
    user: User,
    email_changed: bool,
    name_changed: bool,
    state: FormState,
    active: bool,
) -> str:
    """
    Name the fields a save changes, for the audit log; values other than
    the role and the active state are left out.
    """
    changes = []
    if email_changed:
        changes.append("email")
    if name_changed:
        changes.append("display name")
    if (state.value("fallback_email").strip() or None) != user.fallback_email:
        changes.append("fallback email")
    if state.value("role") and state.value("role") != user.role.value:
        changes.append(f"role {state.value('role')}")
    if active != user.active:
        changes.append("enabled" if active else "disabled")
    return "changed " + ", ".join(changes) if changes else "no change"
