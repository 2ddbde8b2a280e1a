"""
Browser sessions of the login pages and the dashboard: the session cookie
and the rules for reusing a session.

The cookie contains a random secret; the store keeps only its SHA-256. It is
C{Secure}, C{HttpOnly} and C{SameSite=Lax}, with C{Path=/}. A session has an
absolute lifetime and an idle timeout; a signed-in session also ends as
soon as its user is disabled, deleted, changes password, or falls under
mandatory 2FA without having enrolled. A login always starts a new session
with a new cookie, so a session id planted before login is worthless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import http
from twisted.web.iweb import IRequest

from idserver.errors import NotFoundError
from idserver.interfaces import IDirectory, ISessionStore
from idserver.model import User
from idserver.sessions.model import (
    BrowserSession,
    SessionState,
    new_secret,
    secret_key,
)
from idserver.sessions.policy import session_end_reason
from idserver.web.request import client_address

__all__ = ["COOKIE_NAME", "SessionLifetimes", "SessionManager"]

COOKIE_NAME = b"idserver_session"


@dataclass(frozen=True)
class SessionLifetimes:
    """
    Lifetimes of browser sessions, in seconds.

    @ivar absolute: how long a signed-in session lasts at most.
    @ivar idle: how long a signed-in session lasts without a request.
    @ivar pending: how long an anonymous session, or one waiting for a TOTP
        code or an enrolment, lasts.
    """

    absolute: float = 14 * 86400.0
    idle: float = 86400.0
    pending: float = 3600.0


def _add_cookie(request: IRequest, value: bytes, max_age: int) -> None:
    # IRequest.addCookie lacks httpOnly and sameSite; http.Request has them.
    http_request = cast(http.Request, request)
    http_request.addCookie(
        COOKIE_NAME,
        value,
        path=b"/",
        max_age=str(max_age).encode("ascii"),
        secure=True,
        httpOnly=True,
        sameSite="lax",
    )


class SessionManager:
    """
    Finds, starts and ends the browser session of a request.
    """

    log = Logger()

    def __init__(
        self,
        store: ISessionStore,
        directory: IDirectory,
        clock: IReactorTime,
        lifetimes: SessionLifetimes | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.clock = clock
        self.lifetimes = lifetimes or SessionLifetimes()

    def _cookie(self, request: IRequest) -> bytes | None:
        value: bytes | None = request.getCookie(COOKIE_NAME)
        return value

    def _set_cookie(self, request: IRequest, secret: str, max_age: float) -> None:
        _add_cookie(request, secret.encode("ascii"), int(max_age))

    def _clear_cookie(self, request: IRequest) -> None:
        _add_cookie(request, b"", 0)

    def cookie_sent(self, request: IRequest) -> bool:
        """
        Return whether the request carries a session cookie, valid or not.
        A browser leaves the C{SameSite=Lax} cookie out of a POST request
        that another site sends.
        """
        return bool(self._cookie(request))

    async def load(self, request: IRequest) -> BrowserSession | None:
        """
        Return the unexpired session named by the request's cookie, in any
        state, and record the request as its last use.
        """
        cookie = self._cookie(request)
        if not cookie:
            return None
        try:
            key = secret_key(cookie.decode("ascii"))
        except UnicodeDecodeError:
            return None
        session = await self.store.get_session(key)
        if session is None:
            return None
        now = self.clock.seconds()
        idle_limit = (
            self.lifetimes.idle
            if session.state == SessionState.active
            else self.lifetimes.pending
        )
        if now >= session.expires_at or now >= session.last_seen + idle_limit:
            await self.store.delete_session(key)
            return None
        await self.store.touch_session(key, now)
        return session

    async def signed_in(self, request: IRequest) -> tuple[BrowserSession, User] | None:
        """
        Return the signed-in session of the request and its user, or
        C{None}. A session whose user may no longer use it is ended here,
        together with the user's other sessions and grants when the reason
        applies to them all.
        """
        session = await self.load(request)
        if session is None or session.state != SessionState.active:
            return None
        user = await self.user_of(session)
        if user is None:
            return None
        return session, user

    async def user_of(self, session: BrowserSession) -> User | None:
        """
        Return the user of a session if it may still use it; else end the
        session and return C{None}.
        """
        assert session.user_id is not None
        try:
            user = await self.directory.get_user(session.user_id)
        except NotFoundError:
            await self.store.end_user_sessions(session.user_id)
            return None
        settings = await self.directory.get_settings()
        reason = session_end_reason(user, session.auth_time or 0.0, settings)
        if reason is None:
            return user
        self.log.info(
            "Ended the session of {user}: {reason}", user=user.username, reason=reason
        )
        await self.store.delete_session(session.key)
        return None

    async def anonymous(self, request: IRequest) -> BrowserSession:
        """
        Return the request's session, in any state, or start an anonymous
        one (for the CSRF token of a login form) and set its cookie.
        """
        session = await self.load(request)
        if session is not None:
            return session
        return await self.start(request, SessionState.anonymous, None)

    async def start(
        self,
        request: IRequest,
        state: str,
        user: User | None,
        *,
        amr: tuple[str, ...] = (),
        auth_time: float | None = None,
        replacing: BrowserSession | None = None,
    ) -> BrowserSession:
        """
        Start a new session with a new cookie, ending C{replacing}.
        """
        if replacing is not None:
            await self.store.delete_session(replacing.key)
        now = self.clock.seconds()
        lifetime = (
            self.lifetimes.absolute
            if state == SessionState.active
            else self.lifetimes.pending
        )
        secret = new_secret()
        user_agent = request.getHeader(b"user-agent") or b""
        session = BrowserSession(
            key=secret_key(secret),
            sid=new_secret(),
            user_id=None if user is None else user.id,
            state=state,
            csrf_token=new_secret(),
            amr=amr,
            auth_time=auth_time,
            created_at=now,
            last_seen=now,
            expires_at=now + lifetime,
            address=client_address(request),
            user_agent=user_agent.decode("utf-8", "replace")[:200],
        )
        await self.store.add_session(session)
        self._set_cookie(request, secret, lifetime)
        return session

    async def end(self, request: IRequest) -> BrowserSession | None:
        """
        End the request's session, if any, clear the cookie, and return the
        session that ended.
        """
        session = await self.load(request)
        if session is not None:
            await self.store.delete_session(session.key)
        self._clear_cookie(request)
        return session
