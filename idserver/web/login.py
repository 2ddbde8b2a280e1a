"""
The login pages: password, then TOTP for users with 2FA, and TOTP
enrolment when 2FA is mandatory.

Every form is CSRF-protected with the token of the browser's session
(L{idserver.web.csrf}). Password and code checks, rate limits and audit
events go through the shared L{LoginService}, so web logins count failures
together with LDAP binds. After a login the browser goes back to
C{return_to}, a path on this server (usually the authorization request
that sent it here).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import qrcode
import qrcode.image.svg
from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.web.iweb import IRequest
from twisted.web.static import File

from idserver import totp
from idserver.auth import (
    LoginFailed,
    LoginService,
    PasswordLogin,
    TOTPLogin,
    TOTPPolicy,
    TOTPRequired,
)
from idserver.errors import HasherBusyError, NotFoundError
from idserver.interfaces import IAuditLog, IDirectory
from idserver.model import User
from idserver.sessions.model import BrowserSession, SessionState
from idserver.sessions.policy import needs_totp_enrolment
from idserver.web.csrf import check_csrf
from idserver.web.request import client_address
from idserver.web.session import SessionManager
from idserver.web.templates import Markup, render, send_page

__all__ = ["LoginPages", "request_form", "safe_return_to"]

# A login that no app asked for ends on the dashboard's home page.
DEFAULT_RETURN_TO = "/"
STATIC_DIRECTORY = FilePath(__file__).sibling("static")


def safe_return_to(value: str | None, default: str = DEFAULT_RETURN_TO) -> str:
    """
    Return C{value} if it is a path on this server, else C{default}, so a
    link to the login page cannot send the user to another site.
    """
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    ):
        return default
    return value


def request_form(request: IRequest) -> dict[str, list[str]]:
    """
    Return the query and form parameters of C{request} as text. Values that
    are not UTF-8 are dropped.
    """
    form: dict[str, list[str]] = {}
    args: Mapping[bytes, Sequence[bytes]] = request.args or {}
    for key, values in args.items():
        try:
            name = key.decode("utf-8")
            form[name] = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            continue
    return form


def _one(form: Mapping[str, Sequence[str]], name: str) -> str:
    values = form.get(name, [])
    return values[0] if len(values) == 1 else ""


def _qr_data_uri(uri: str) -> str:
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=10)
    buffer = io.BytesIO()
    image.save(buffer)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/svg+xml;base64,{encoded}"


class LoginPages:
    """
    The routes C{/login}, C{/login/totp}, C{/login/enrol}, C{/login/done},
    C{/logout} and C{/static/}.
    """

    app = Klein()
    # Werkzeug redirects a path with doubled slashes to an absolute URL
    # built from the client's Host header, so such a path gets 404.
    app.url_map.merge_slashes = False
    log = Logger()

    def __init__(
        self,
        *,
        sessions: SessionManager,
        logins: LoginService,
        directory: IDirectory,
        audit: IAuditLog,
        clock: IReactorTime,
    ) -> None:
        self.sessions = sessions
        self.logins = logins
        self.directory = directory
        self.audit = audit
        self.clock = clock

    async def _server_name(self) -> str:
        settings = await self.directory.get_settings()
        return str(settings.get("name") or "idserver")

    async def _page(
        self,
        request: IRequest,
        template: str,
        *,
        status: int | None = None,
        **values: Any,
    ) -> bytes:
        body = render(template, **values)
        return send_page(request, await self._server_name(), body, status=status)

    def _redirect(self, request: IRequest, location: str) -> bytes:
        request.setResponseCode(303)
        request.setHeader(b"Location", location.encode("utf-8"))
        request.setHeader(b"Cache-Control", b"no-store")
        return b""

    def _error(self, message: str) -> Markup:
        return render("form_error.html", message=message)

    async def _expired_form(self, request: IRequest, return_to: str) -> bytes:
        link = "/login?" + urlencode({"return_to": return_to})
        return await self._page(
            request,
            "expired.html",
            status=403,
            message="The form has expired. Please sign in again.",
            link=link,
        )

    async def _busy(self, request: IRequest) -> bytes:
        request.setHeader(b"Retry-After", b"5")
        return await self._page(
            request,
            "error.html",
            status=503,
            message="The server is busy. Please try again in a moment.",
            error="temporarily_unavailable",
        )

    # Password

    @app.route("/login", methods=["GET", "HEAD"])
    async def login_form(self, request: IRequest) -> bytes:
        """
        Show the username and password form.
        """
        form = request_form(request)
        session = await self.sessions.anonymous(request)
        return await self._login_page(
            request,
            session,
            safe_return_to(_one(form, "return_to")),
            _one(form, "login_hint"),
        )

    async def _login_page(
        self,
        request: IRequest,
        session: BrowserSession,
        return_to: str,
        username: str,
        error: str | None = None,
    ) -> bytes:
        return await self._page(
            request,
            "login.html",
            error=self._error(error) if error else "",
            username=username,
            csrf_token=session.csrf_token,
            return_to=return_to,
        )

    @app.route("/login", methods=["POST"])
    async def login_submit(self, request: IRequest) -> bytes:
        """
        Check the username and password; continue to the TOTP step, the
        enrolment, or back to C{return_to}.
        """
        form = request_form(request)
        return_to = safe_return_to(_one(form, "return_to"))
        session = await self.sessions.load(request)
        if session is None or not check_csrf(session, form):
            return await self._expired_form(request, return_to)

        username = _one(form, "username").strip()
        credentials = PasswordLogin(
            login=username,
            password=_one(form, "password"),
            address=client_address(request),
            entry_point="web",
            totp_policy=TOTPPolicy.second_step,
        )
        try:
            result = await self.logins.authenticate(credentials)
        except TOTPRequired as e:
            await self.sessions.start(
                request, SessionState.totp, e.user, amr=("pwd",), replacing=session
            )
            return self._redirect(request, _with_return_to("/login/totp", return_to))
        except LoginFailed:
            request.setResponseCode(401)
            return await self._login_page(
                request, session, return_to, username, "Wrong username or password."
            )
        except HasherBusyError:
            return await self._busy(request)

        return await self._signed_in(
            request, result.user, result.amr, session, return_to
        )

    async def _signed_in(
        self,
        request: IRequest,
        user: User,
        amr: tuple[str, ...],
        session: BrowserSession,
        return_to: str,
    ) -> bytes:
        settings = await self.directory.get_settings()
        if needs_totp_enrolment(user, settings):
            await self.sessions.start(
                request, SessionState.enrol, user, amr=amr, replacing=session
            )
            return self._redirect(request, _with_return_to("/login/enrol", return_to))
        await self.sessions.start(
            request,
            SessionState.active,
            user,
            amr=amr,
            auth_time=self.clock.seconds(),
            replacing=session,
        )
        return self._redirect(request, return_to)

    # TOTP

    async def _pending(
        self, request: IRequest, state: str
    ) -> tuple[BrowserSession, User] | None:
        session = await self.sessions.load(request)
        if session is None or session.state != state or session.user_id is None:
            return None
        try:
            user = await self.directory.get_user(session.user_id)
        except NotFoundError:
            return None
        if not user.active:
            return None
        return session, user

    @app.route("/login/totp", methods=["GET", "HEAD"])
    async def totp_form(self, request: IRequest) -> bytes:
        """
        Show the TOTP code form after a correct password.
        """
        return_to = safe_return_to(_one(request_form(request), "return_to"))
        pending = await self._pending(request, SessionState.totp)
        if pending is None:
            return self._redirect(request, _with_return_to("/login", return_to))
        session, _ = pending
        return await self._totp_page(request, session, return_to)

    async def _totp_page(
        self,
        request: IRequest,
        session: BrowserSession,
        return_to: str,
        error: str | None = None,
    ) -> bytes:
        return await self._page(
            request,
            "totp.html",
            error=self._error(error) if error else "",
            csrf_token=session.csrf_token,
            return_to=return_to,
        )

    @app.route("/login/totp", methods=["POST"])
    async def totp_submit(self, request: IRequest) -> bytes:
        """
        Check the TOTP code and finish the login.
        """
        form = request_form(request)
        return_to = safe_return_to(_one(form, "return_to"))
        pending = await self._pending(request, SessionState.totp)
        if pending is None or not check_csrf(pending[0], form):
            return await self._expired_form(request, return_to)
        session, user = pending
        credentials = TOTPLogin(
            user_id=user.id,
            code=_one(form, "totp").strip(),
            address=client_address(request),
            entry_point="web",
        )
        try:
            await self.logins.authenticate(credentials)
        except LoginFailed:
            request.setResponseCode(401)
            return await self._totp_page(
                request, session, return_to, "The code is wrong or was already used."
            )
        return await self._signed_in(
            request, user, (*session.amr, "otp"), session, return_to
        )

    # Enrolment

    @app.route("/login/enrol", methods=["GET", "HEAD"])
    async def enrol_form(self, request: IRequest) -> bytes:
        """
        Show a new TOTP secret as a QR code and text, for a user who must
        enrol before continuing.
        """
        return_to = safe_return_to(_one(request_form(request), "return_to"))
        pending = await self._pending(request, SessionState.enrol)
        if pending is None:
            return self._redirect(request, _with_return_to("/login", return_to))
        session, user = pending
        secret = await self.directory.start_totp_enrolment(user.id)
        return await self._enrol_page(request, session, user, secret, return_to)

    async def _enrol_page(
        self,
        request: IRequest,
        session: BrowserSession,
        user: User,
        secret: str,
        return_to: str,
        error: str | None = None,
    ) -> bytes:
        uri = totp.provisioning_uri(secret, user.username, await self._server_name())
        return await self._page(
            request,
            "enrol.html",
            error=self._error(error) if error else "",
            qr_data_uri=_qr_data_uri(uri),
            secret=secret,
            csrf_token=session.csrf_token,
            return_to=return_to,
        )

    @app.route("/login/enrol", methods=["POST"])
    async def enrol_submit(self, request: IRequest) -> bytes:
        """
        Turn 2FA on with the code of the new secret and finish the login.
        """
        form = request_form(request)
        return_to = safe_return_to(_one(form, "return_to"))
        pending = await self._pending(request, SessionState.enrol)
        if pending is None or not check_csrf(pending[0], form):
            return await self._expired_form(request, return_to)
        session, user = pending
        address = client_address(request)
        if not await self.directory.confirm_totp_enrolment(
            user.id, _one(form, "totp").strip()
        ):
            await self.audit.record(
                "totp.enable",
                "failure",
                entry_point="web",
                actor=user.username,
                subject=user.username,
                address=address,
                detail="wrong code at the enrolment during login",
            )
            # The pending secret is unchanged; show it again from the form.
            request.setResponseCode(401)
            secret = _one(form, "secret")
            if not secret:
                secret = await self.directory.start_totp_enrolment(user.id)
            return await self._enrol_page(
                request, session, user, secret, return_to, "The code is wrong."
            )
        await self.audit.record(
            "totp.enable",
            "success",
            entry_point="web",
            actor=user.username,
            subject=user.username,
            address=address,
            detail="enrolled during login",
        )
        self.log.info(
            "{user} enrolled TOTP during login from {address}",
            user=user.username,
            address=address,
        )
        user = await self.directory.get_user(user.id)
        return await self._signed_in(
            request, user, (*session.amr, "otp"), session, return_to
        )

    # Signed in, signing out

    @app.route("/login/done", methods=["GET", "HEAD"])
    async def done(self, request: IRequest) -> bytes:
        """
        Show who is signed in, for a login that did not come from an app.
        """
        current = await self.sessions.signed_in(request)
        if current is None:
            return self._redirect(request, "/login")
        session, user = current
        return await self._page(
            request,
            "signed_in.html",
            username=user.username,
            csrf_token=session.csrf_token,
        )

    @app.route("/logout", methods=["POST"])
    async def logout(self, request: IRequest) -> bytes:
        """
        End the browser session.
        """
        form = request_form(request)
        session = await self.sessions.load(request)
        if session is not None and check_csrf(session, form):
            await self.sessions.end(request)
        return self._redirect(request, "/login")

    @app.route("/static/", branch=True, methods=["GET", "HEAD"])
    def static(self, request: IRequest) -> File:
        """
        Serve the style sheet and scripts of the pages.
        """
        request.setHeader(b"Cache-Control", b"public, max-age=3600")
        return File(STATIC_DIRECTORY.path)


def _with_return_to(path: str, return_to: str) -> str:
    return path + "?" + urlencode({"return_to": return_to})
