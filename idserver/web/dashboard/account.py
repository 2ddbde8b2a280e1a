"""
The pages every signed-in user has: the apps they may use, their profile,
password and two-factor authentication, and their app sessions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from idserver import totp
from idserver.auth import (
    LoginFailed,
    PasswordLogin,
    RateLimited,
    TOTPPolicy,
    TOTPRequired,
)
from idserver.errors import DirectoryError, HasherBusyError
from idserver.model import Source, User
from idserver.oidc.model import Client
from idserver.sessions.model import SessionState
from idserver.web.dashboard.appsessions import SessionListing
from idserver.web.dashboard.base import Viewer, done_notice, form_value
from idserver.web.dashboard.html import (
    FormState,
    element,
    hidden,
    qr_data_uri,
    text_input,
)
from idserver.web.request import client_address
from idserver.web.templates import Markup

__all__ = ["AccountPages", "client_allows", "profile_lock_reason"]

_NOTICES = {
    "profile": "Your profile was saved.",
    "password": "Your password was changed. Your other sessions and app"
    " sessions have ended.",
    "totp-on": "Two-factor authentication is on.",
    "totp-off": "Two-factor authentication is off.",
    "revoked": "The app session was revoked.",
    "signed-out": "The browser session was signed out.",
}

PROFILE_FIELDS = ("display_name", "email", "fallback_email")
PASSWORD_FIELDS = ("current_password", "new_password", "confirm_password")


def profile_lock_reason(user: User, settings: Any) -> str | None:
    """
    Return why C{user} may not edit their own profile, or C{None}.

    External users never may, since the external directory owns their
    details; with C{lock_profile} on, only admins may.
    """
    if user.source is Source.ldap:
        return (
            "Your account comes from the external directory, so your name and"
            " email addresses can only be changed there."
        )
    if settings.get("lock_profile") and not user.is_admin:
        return (
            "An administrator has locked profiles on this server. Ask an"
            " administrator to change your details."
        )
    return None


def client_allows(client: Client, user: User, group_ids: set[str]) -> bool:
    """
    Return whether C{user}, a member of the groups C{group_ids}, may use
    C{client}: it has no group restriction, the user is an admin, or the
    user is in one of its allowed groups.
    """
    if not client.allowed_group_ids or user.is_admin:
        return True
    return any(group_id in group_ids for group_id in client.allowed_group_ids)


class AccountPages(SessionListing):
    """
    The routes C{/}, C{/account/profile}, C{/account/security} and
    C{/account/sessions}.
    """

    app = Klein()

    # Apps

    @app.route("/", methods=["GET", "HEAD"])
    async def home(self, request: IRequest) -> bytes:
        """
        List the apps the user may use, with their launch links.
        """
        viewer = await self.viewer(request)
        if not isinstance(viewer, Viewer):
            return viewer
        user = viewer.user
        group_ids = {group.id for group in await self.directory.groups_of(user.id)}
        clients = [
            client
            for client in await self.context.clients.list_clients()
            if client_allows(client, user, group_ids)
        ]
        if clients:
            cards = element(
                "ul", [self._app_card(client) for client in clients], class_="apps"
            )
        else:
            cards = element("p", "No apps are available to you yet.", class_="empty")
        intro = element(
            "p",
            f"Signed in as {user.username}. These apps sign you in with your"
            f" {viewer.server_name} account.",
            class_="lead",
        )
        return self.page(
            request, viewer, "Your apps", intro, cards, section="/", notice=None
        )

    def _app_card(self, client: Client) -> Markup:
        initial = (client.name[:1] or "?").upper()
        icon = element("span", initial, class_="app-icon", aria_hidden="true")
        if client.launch_url:
            title: Markup = element(
                "a", client.name, href=client.launch_url, rel="noopener"
            )
            detail = element("span", client.launch_url, class_="muted")
        else:
            title = element("span", client.name)
            detail = element("span", "Opened from the app itself", class_="muted")
        return element(
            "li",
            icon,
            element("div", element("strong", title), detail, class_="app-text"),
            class_="app",
        )

    # Profile

    @app.route("/account/profile", methods=["GET", "HEAD"])
    async def profile(self, request: IRequest) -> bytes:
        """
        Show the user's profile form, read-only when locked.
        """
        viewer = await self.viewer(request)
        if not isinstance(viewer, Viewer):
            return viewer
        return self._profile_page(
            request,
            viewer,
            self._profile_state(viewer.user),
            done_notice(request, _NOTICES),
        )

    def _profile_state(self, user: User) -> FormState:
        return FormState.of(
            {
                "username": user.username,
                "display_name": user.display_name,
                "email": user.email,
                "fallback_email": user.fallback_email,
            }
        )

    def _profile_page(
        self,
        request: IRequest,
        viewer: Viewer,
        state: FormState,
        notice: str | None = None,
    ) -> bytes:
        reason = profile_lock_reason(viewer.user, viewer.settings)
        locked = reason is not None
        fields = [
            text_input(state, "username", "Username", readonly=True, hint=None),
            text_input(
                state,
                "display_name",
                "Display name",
                readonly=locked,
                autocomplete="name",
            ),
            text_input(
                state,
                "email",
                "Email",
                type="email",
                readonly=locked,
                required=True,
                autocomplete="email",
            ),
            text_input(
                state,
                "fallback_email",
                "Fallback email",
                type="email",
                readonly=locked,
                hint="A second address for account recovery; leave empty for none.",
            ),
        ]
        if locked:
            body: list[Any] = [
                element("p", reason, class_="alert alert-info", id="profile-locked"),
                element("div", fields, class_="stack card"),
            ]
        else:
            body = [
                state.summary(),
                self.post_form(viewer, "/account/profile", fields, class_="stack card"),
            ]
        return self.page(
            request,
            viewer,
            "Profile",
            body,
            section="/account/profile",
            notice=notice,
        )

    @app.route("/account/profile", methods=["POST"])
    async def profile_submit(self, request: IRequest) -> bytes:
        """
        Save the display name and email addresses, unless locked.
        """
        posted = await self.viewer_post(request)
        if isinstance(posted, bytes):
            return posted
        viewer, form = posted
        user = viewer.user
        state = self._profile_state(user)
        reason = profile_lock_reason(user, viewer.settings)
        if reason is not None:
            request.setResponseCode(403)
            return self._profile_page(request, viewer, state)

        for name in PROFILE_FIELDS:
            state.values[name] = form_value(form, name)
        email = state.value("email").strip()
        email_changed = email.lower() != user.email
        try:
            await self.directory.update_user(
                user.id,
                display_name=state.value("display_name"),
                email=email if email_changed else None,
                # An address the user typed is unconfirmed until an
                # administrator or the external directory sets it.
                email_verified=False if email_changed else None,
                fallback_email=state.value("fallback_email").strip(),
            )
        except DirectoryError as error:
            state.fail(error, PROFILE_FIELDS)
            await self.record(
                request,
                viewer,
                "profile.update",
                user.username,
                str(error),
                outcome="failure",
            )
            request.setResponseCode(400)
            return self._profile_page(request, viewer, state)
        await self.record(
            request,
            viewer,
            "profile.update",
            user.username,
            "changed the email address" if email_changed else "changed the profile",
        )
        return self.redirect(request, "/account/profile?done=profile")

    # Password and 2FA

    @app.route("/account/security", methods=["GET", "HEAD"])
    async def security(self, request: IRequest) -> bytes:
        """
        Show the password form and the state of two-factor authentication.
        """
        viewer = await self.viewer(request)
        if not isinstance(viewer, Viewer):
            return viewer
        return self._security_page(
            request, viewer, FormState(), FormState(), done_notice(request, _NOTICES)
        )

    def _security_page(
        self,
        request: IRequest,
        viewer: Viewer,
        password_state: FormState,
        totp_state: FormState,
        notice: str | None = None,
    ) -> bytes:
        user = viewer.user
        password_form = self.post_form(
            viewer,
            "/account/password",
            password_state.summary(),
            text_input(
                password_state,
                "current_password",
                "Current password",
                type="password",
                required=True,
                autocomplete="current-password",
                keep_value=False,
            ),
            text_input(
                password_state,
                "new_password",
                "New password",
                type="password",
                required=True,
                autocomplete="new-password",
                keep_value=False,
                hint="At least 8 characters, not your username.",
            ),
            text_input(
                password_state,
                "confirm_password",
                "New password again",
                type="password",
                required=True,
                autocomplete="new-password",
                keep_value=False,
            ),
            submit="Change password",
            class_="stack card",
        )
        if user.source is Source.ldap:
            password_form = element(
                "p",
                "Your account comes from the external directory, so your"
                " password is changed there.",
                class_="alert alert-info",
            )
        sections = [
            element("h2", "Password"),
            password_form,
            element("h2", "Two-factor authentication"),
            self._totp_section(viewer, totp_state),
        ]
        return self.page(
            request,
            viewer,
            "Password & 2FA",
            sections,
            section="/account/security",
            notice=notice,
        )

    def _totp_section(self, viewer: Viewer, state: FormState) -> Markup:
        user = viewer.user
        if not user.totp_enabled:
            return element(
                "div",
                element(
                    "p",
                    "Two-factor authentication is off. With it on, signing in"
                    " also asks for a 6-digit code from an authenticator app.",
                ),
                self.post_form(
                    viewer,
                    "/account/totp/start",
                    submit="Set up two-factor authentication",
                    class_="inline",
                ),
                class_="card stack",
                id="totp-off",
            )
        if viewer.settings.get("mandatory_2fa"):
            removal: Markup = element(
                "p",
                "Two-factor authentication is mandatory on this server, so it"
                " cannot be turned off.",
                class_="muted",
            )
        else:
            removal = self.post_form(
                viewer,
                "/account/totp/remove",
                state.summary(),
                text_input(
                    state,
                    "password",
                    "Password",
                    type="password",
                    required=True,
                    autocomplete="current-password",
                    keep_value=False,
                    hint="Enter your password to turn two-factor authentication off.",
                ),
                submit="Turn off two-factor authentication",
                button_class="danger",
            )
        return element(
            "div",
            element(
                "p",
                element("span", "On", class_="badge badge-ok"),
                " Signing in asks for a code from your authenticator app.",
            ),
            removal,
            class_="card stack",
            id="totp-on",
        )

    @app.route("/account/password", methods=["POST"])
    async def password_submit(self, request: IRequest) -> bytes:
        """
        Change the password after checking the current one, then end every
        other session and app session of the user.
        """
        posted = await self.viewer_post(request)
        if isinstance(posted, bytes):
            return posted
        viewer, form = posted
        user = viewer.user
        state = FormState(aliases={"password": "new_password"})
        if user.source is Source.ldap:
            request.setResponseCode(403)
            return self._security_page(request, viewer, state, FormState())

        new_password = form_value(form, "new_password")
        checked = await self._check_password(
            request, user, form_value(form, "current_password")
        )
        if checked is not None:
            state.add_error("current_password", checked)
        elif new_password != form_value(form, "confirm_password"):
            state.add_error("confirm_password", "The passwords do not match.")
        else:
            try:
                await self.directory.set_password(user.id, new_password)
            except DirectoryError as error:
                state.fail(error, PASSWORD_FIELDS)
            except HasherBusyError:
                state.general.append(
                    "The server is busy. Please try again in a moment."
                )
        if state.failed:
            request.setResponseCode(400)
            return self._security_page(request, viewer, state, FormState())

        ended = await self.context.store.end_user_sessions(user.id)
        # The password changed after this session's login, so the session
        # would end at the next request: start a new one for this browser.
        await self.context.sessions.start(
            request,
            SessionState.active,
            user,
            amr=viewer.session.amr,
            auth_time=self.context.clock.seconds(),
        )
        await self.record(
            request,
            viewer,
            "password.change",
            user.username,
            f"ended {ended} sessions and app sessions",
        )
        return self.redirect(request, "/account/security?done=password")

    async def _check_password(
        self, request: IRequest, user: User, password: str
    ) -> str | None:
        """
        Check the user's current password through the login service, so
        failures count towards the same rate limits as logins. Return the
        error to show, or C{None} when it is right.
        """
        credentials = PasswordLogin(
            login=user.username,
            password=password,
            address=client_address(request),
            entry_point="web",
            totp_policy=TOTPPolicy.second_step,
            user_id=user.id,
            reauthentication=True,
        )
        try:
            await self.context.logins.authenticate(credentials)
        except TOTPRequired:
            # The password was right; the code is not asked for here.
            return None
        except RateLimited:
            # The password was not checked, so calling it wrong would
            # mislead a user who typed it right.
            return (
                "Too many failed attempts. The password was not checked; try"
                " again in a few minutes."
            )
        except LoginFailed:
            return "The password is wrong."
        except HasherBusyError:
            return "The server is busy. Please try again in a moment."
        return None

    @app.route("/account/totp/start", methods=["POST"])
    async def totp_start(self, request: IRequest) -> bytes:
        """
        Generate a pending TOTP secret and show it with the code form.
        """
        posted = await self.viewer_post(request)
        if isinstance(posted, bytes):
            return posted
        viewer, form = posted
        if viewer.user.totp_enabled:
            return self.redirect(request, "/account/security")
        secret = await self.directory.start_totp_enrolment(viewer.user.id)
        return self._enrol_page(request, viewer, secret, FormState())

    def _enrol_page(
        self, request: IRequest, viewer: Viewer, secret: str, state: FormState
    ) -> bytes:
        uri = totp.provisioning_uri(secret, viewer.user.username, viewer.server_name)
        grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
        body = [
            element(
                "ol",
                element(
                    "li",
                    "Scan the QR code with an authenticator app, or type the"
                    " secret into it.",
                ),
                element("li", "Enter the 6-digit code the app shows."),
                class_="steps",
            ),
            element(
                "div",
                element(
                    "img",
                    class_="qr",
                    src=qr_data_uri(uri),
                    alt="QR code of the TOTP secret",
                    width="200",
                    height="200",
                ),
                element(
                    "p",
                    "Secret: ",
                    element("code", grouped, id="totp-secret"),
                    class_="secret",
                ),
                class_="card enrol",
            ),
            state.summary(),
            self.post_form(
                viewer,
                "/account/totp/confirm",
                hidden("secret", secret),
                text_input(
                    state,
                    "totp",
                    "Code",
                    required=True,
                    autocomplete="one-time-code",
                    inputmode="numeric",
                    pattern="[0-9]*",
                    maxlength="6",
                    keep_value=False,
                ),
                submit="Turn on two-factor authentication",
                class_="stack card",
            ),
        ]
        return self.page(
            request,
            viewer,
            "Set up two-factor authentication",
            body,
            section="/account/security",
        )

    @app.route("/account/totp/confirm", methods=["POST"])
    async def totp_confirm(self, request: IRequest) -> bytes:
        """
        Turn 2FA on when the code matches the pending secret.
        """
        posted = await self.viewer_post(request)
        if isinstance(posted, bytes):
            return posted
        viewer, form = posted
        user = viewer.user
        if user.totp_enabled:
            return self.redirect(request, "/account/security")
        code = form_value(form, "totp").strip()
        if not await self.directory.confirm_totp_enrolment(user.id, code):
            await self.record(
                request,
                viewer,
                "totp.enable",
                user.username,
                "wrong code at the enrolment",
                outcome="failure",
            )
            state = FormState()
            state.add_error(
                "totp", "The code is wrong. Enter the code the app shows now."
            )
            secret = form_value(form, "secret")
            if not secret:
                secret = await self.directory.start_totp_enrolment(user.id)
            request.setResponseCode(400)
            return self._enrol_page(request, viewer, secret, state)
        await self.record(
            request, viewer, "totp.enable", user.username, "enrolled in the dashboard"
        )
        return self.redirect(request, "/account/security?done=totp-on")

    @app.route("/account/totp/remove", methods=["POST"])
    async def totp_remove(self, request: IRequest) -> bytes:
        """
        Turn 2FA off after checking the password, unless 2FA is mandatory.
        """
        posted = await self.viewer_post(request)
        if isinstance(posted, bytes):
            return posted
        viewer, form = posted
        user = viewer.user
        state = FormState()
        if not user.totp_enabled:
            return self.redirect(request, "/account/security")
        if viewer.settings.get("mandatory_2fa"):
            state.general.append(
                "Two-factor authentication is mandatory on this server, so it"
                " cannot be turned off."
            )
        else:
            error = await self._check_password(
                request, user, form_value(form, "password")
            )
            if error is not None:
                state.add_error("password", error)
        if state.failed:
            await self.record(
                request,
                viewer,
                "totp.disable",
                user.username,
                "; ".join([*state.general, *state.errors.values()]),
                outcome="failure",
            )
            request.setResponseCode(400)
            return self._security_page(request, viewer, FormState(), state)
        await self.directory.disable_totp(user.id)
        await self.record(
            request, viewer, "totp.disable", user.username, "turned off by the user"
        )
        return self.redirect(request, "/account/security?done=totp-off")

    # App sessions

    @app.route("/account/sessions", methods=["GET", "HEAD"])
    async def app_sessions(self, request: IRequest) -> bytes:
        """
        List the user's app sessions and signed-in browsers.
        """
        viewer = await self.viewer(request)
        if not isinstance(viewer, Viewer):
            return viewer
        body = await self.sessions_tables(viewer, viewer.user, "/account/sessions")
        return self.page(
            request,
            viewer,
            "App sessions",
            element(
                "p",
                "Each app you signed in to keeps a session until it expires or"
                " you revoke it. Revoking ends the app's access at once: its"
                " tokens stop working and it has to ask you to sign in again.",
                class_="lead",
            ),
            body,
            section="/account/sessions",
            notice=done_notice(request, _NOTICES),
        )

    @app.route("/account/sessions/revoke", methods=["POST"])
    async def revoke_grant(self, request: IRequest) -> bytes:
        """
        Revoke one of the user's app sessions with its tokens.
        """
        return await self._end_session(
            request,
            self.revoke_user_grant,
            "grant",
            "There is no such app session.",
            "revoked",
        )

    @app.route("/account/sessions/signout", methods=["POST"])
    async def sign_out_browser(self, request: IRequest) -> bytes:
        """
        End one of the user's other browser sessions.
        """
        return await self._end_session(
            request,
            self.sign_out_user_browser,
            "sid",
            "There is no such browser session.",
            "signed-out",
        )

    async def _end_session(
        self,
        request: IRequest,
        end: Callable[[IRequest, Viewer, User, str], Awaitable[bool]],
        field: str,
        missing: str,
        done: str,
    ) -> bytes:
        """
        End the viewer's session that the form field C{field} names.

        @param end: ends the session; returns C{False} if the viewer has no
            such session.
        @param missing: the 404 message for an unknown session.
        @param done: the notice code of the redirect.
        """
        posted = await self.viewer_post(request)
        if isinstance(posted, bytes):
            return posted
        viewer, form = posted
        if await end(request, viewer, viewer.user, form_value(form, field)):
            return self.redirect(request, f"/account/sessions?done={done}")
        return self.not_found(request, viewer, missing)
