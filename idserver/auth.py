"""
Password and TOTP checks shared by every entry point: LDAP binds, the web
login and the token endpoint.

Rate limits, 2FA rules, logging and audit events live here, so each entry
point gets the same behaviour and the counters are shared between them.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from idserver.errors import NotFoundError
from idserver.interfaces import IAuditLog, IDirectory, IRateLimitStore
from idserver.model import User

__all__ = [
    "LoginFailed",
    "LoginResult",
    "LoginService",
    "PasswordLogin",
    "RateLimited",
    "TOTPLogin",
    "TOTPPolicy",
    "TOTPRequired",
]

_T = TypeVar("_T")


class TOTPPolicy(enum.Enum):
    """
    The treatment of users with 2FA in a password login.

    @cvar if_given: check a code when one is given (LDAP binds).
    @cvar required: users with 2FA must give a code (LDAP binds with
        C{ldap_require_2fa}).
    @cvar second_step: users with 2FA get L{TOTPRequired} after a correct
        password, and send the code with L{TOTPLogin} (web login).
    """

    if_given = "if_given"
    required = "required"
    second_step = "second_step"


@implementer(ICredentials)
@dataclass(frozen=True)
class PasswordLogin:
    """
    Credentials of a password login.

    @ivar login: the username or email as typed.
    @ivar address: the client address, for rate limits and the audit log.
    @ivar entry_point: C{ldap}, C{web} or C{oidc}.
    @ivar totp: a TOTP code given with the password, if any.
    @ivar user_id: the user's id when the caller already resolved it (an
        LDAP bind DN naming C{cn=<user id>}); C{login} is then ignored.
    @ivar reauthentication: C{True} when a signed-in user confirms their
        password (before changing it, or removing 2FA). A success is then
        audited as C{password.check}, not as a login; a failure still counts
        and is audited as a failed login.
    """

    login: str
    password: str
    address: str | None
    entry_point: str
    totp: str | None = None
    totp_policy: TOTPPolicy = TOTPPolicy.if_given
    user_id: str | None = None
    reauthentication: bool = False

    def __repr__(self) -> str:
        # The password and code must never reach a log through a repr.
        return (
            f"PasswordLogin(login={self.login!r}, address={self.address!r},"
            f" entry_point={self.entry_point!r})"
        )


@implementer(ICredentials)
@dataclass(frozen=True)
class TOTPLogin:
    """
    Credentials of the second step of a web login, after L{TOTPRequired}.
    """

    user_id: str
    code: str
    address: str | None
    entry_point: str

    def __repr__(self) -> str:
        return (
            f"TOTPLogin(user_id={self.user_id!r}, address={self.address!r},"
            f" entry_point={self.entry_point!r})"
        )


@dataclass(frozen=True)
class LoginResult:
    """
    A successful login.

    @ivar amr: the authentication methods used, as OpenID Connect C{amr}
        values: C{("pwd",)}, C{("pwd", "otp")}, or C{("otp",)} for a
        L{TOTPLogin} (the web layer adds C{pwd} from the first step).
    """

    user: User
    amr: tuple[str, ...]


class LoginFailed(UnauthorizedLogin):
    """
    The login failed. C{reason} is for the log and the audit event only;
    clients get the same generic failure for every reason.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RateLimited(LoginFailed):
    """
    Too many recent failures for this user or address; the password was
    not checked.
    """


class TOTPRequired(UnauthorizedLogin):
    """
    The password is correct and the user has 2FA: ask for a code.
    """

    def __init__(self, user: User) -> None:
        super().__init__("a TOTP code is required")
        self.user = user


@implementer(ICredentialsChecker)
class LoginService:
    """
    Checks passwords and TOTP codes with rate limits and audit events.

    Failures are counted per user and per client address within a sliding
    window. Past C{user_limit} failures for a user, or C{address_limit} for
    an address, logins fail without a password check until the window has
    moved on. A success resets the user's counter but not the address's, so
    the address limit counts failures only and one app serving many users
    from one address is not locked out by one user.

    Checks in progress for a user count towards the user's limit: a login
    that would exceed it waits for one of them to end and then counts
    again. So guesses sent in parallel cannot all be checked before the
    first one fails, and parallel logins with the right password (several
    connections of one mail client) are delayed, not rejected.
    Every L{LoginService} of a process shares these counts, so the LDAP
    server and the web login together stay within the limit.
    NOTE: the counts are per process, so several processes sharing one
    store may each run up to C{user_limit} checks of a user at once.
    """

    log = Logger()
    credentialInterfaces = (ICredentials,)

    _in_progress: ClassVar[Counter[str]] = Counter()
    _waiting: ClassVar[dict[str, list[Deferred[None]]]] = {}

    def __init__(
        self,
        directory: IDirectory,
        audit: IAuditLog,
        rate_limits: IRateLimitStore,
        *,
        user_limit: int = 5,
        address_limit: int = 50,
        window: float = 300.0,
    ) -> None:
        self.directory = directory
        self.audit = audit
        self.rate_limits = rate_limits
        self.user_limit = user_limit
        self.address_limit = address_limit
        self.window = window
        self._dummy_hash: str | None = None

    def authenticate(
        self, credentials: PasswordLogin | TOTPLogin
    ) -> Deferred[LoginResult]:
        """
        Check C{credentials}.

        @return: a L{Deferred} firing with a L{LoginResult}, or failing with
            L{LoginFailed} (L{RateLimited} included), L{TOTPRequired}, or
            L{idserver.errors.HasherBusyError} when the hashing queue is full.
        """
        if isinstance(credentials, TOTPLogin):
            return _start(self._check_totp_login(credentials))
        return _start(self._check_password_login(credentials))

    def requestAvatarId(self, credentials: ICredentials) -> Deferred[bytes | tuple[()]]:
        """
        Check C{credentials} as a L{twisted.cred} checker: the avatar id is
        the user id, in UTF-8.
        """
        if not isinstance(credentials, PasswordLogin | TOTPLogin):
            raise TypeError(f"unsupported credentials: {credentials!r}")
        return self.authenticate(credentials).addCallback(
            lambda result: result.user.id.encode("utf-8")
        )

    async def _check_password_login(self, creds: PasswordLogin) -> LoginResult:
        if creds.user_id is not None:
            user = await _maybe_user(self.directory, creds.user_id)
            display_user = creds.user_id
        else:
            user = await self.directory.user_by_login(creds.login)
            display_user = creds.login.strip().lower()
        user_key = f"user:{user.id}" if user is not None else f"login:{display_user}"
        if user is not None:
            display_user = user.username
        elif not _looks_like_login(display_user):
            # People type their password into the username field: a name
            # that cannot be a username or email is kept out of the logs.
            display_user = "(not a valid username)"

        await self._check_limits(
            user_key, display_user, creds.address, creds.entry_point
        )
        try:
            return await self._check_password(creds, user, user_key, display_user)
        finally:
            self._release(user_key)

    async def _check_password(
        self,
        creds: PasswordLogin,
        user: User | None,
        user_key: str,
        display_user: str,
    ) -> LoginResult:
        if not creds.password:
            # RFC 4513 5.1.2: an empty password is never a password.
            await self._fail(user_key, display_user, creds, "empty password")
        if user is None:
            await self._spend_hash_time(creds.password)
            await self._fail(user_key, display_user, creds, "unknown user")
        assert user is not None
        if not user.has_password:
            await self._fail(user_key, display_user, creds, "no local password")
        if not await self.directory.check_password(user.id, creds.password):
            await self._fail(user_key, display_user, creds, "wrong password")
        if not user.active:
            await self._fail(user_key, display_user, creds, "user is disabled")

        amr: tuple[str, ...] = ("pwd",)
        if user.totp_enabled:
            if creds.totp:
                if not await self.directory.verify_totp(user.id, creds.totp):
                    await self._fail(
                        user_key, display_user, creds, "wrong or reused TOTP code"
                    )
                amr = ("pwd", "otp")
            elif creds.totp_policy is TOTPPolicy.required:
                await self._fail(user_key, display_user, creds, "TOTP code missing")
            elif creds.totp_policy is TOTPPolicy.second_step:
                raise TOTPRequired(user)

        kind = "password.check" if creds.reauthentication else "login"
        await self._succeed(
            user_key, user, creds.address, creds.entry_point, amr, kind=kind
        )
        return LoginResult(user, amr)

    async def _check_totp_login(self, creds: TOTPLogin) -> LoginResult:
        user = await _maybe_user(self.directory, creds.user_id)
        display_user = user.username if user is not None else creds.user_id
        user_key = f"user:{creds.user_id}"
        await self._check_limits(
            user_key, display_user, creds.address, creds.entry_point
        )
        try:
            return await self._check_totp(creds, user, user_key, display_user)
        finally:
            self._release(user_key)

    async def _check_totp(
        self,
        creds: TOTPLogin,
        user: User | None,
        user_key: str,
        display_user: str,
    ) -> LoginResult:
        if user is None or not user.active:
            await self._fail(
                user_key, display_user, creds, "user is disabled or deleted"
            )
        assert user is not None
        if not user.totp_enabled:
            await self._fail(user_key, display_user, creds, "2FA is not enabled")
        if not await self.directory.verify_totp(user.id, creds.code):
            await self._fail(user_key, display_user, creds, "wrong or reused TOTP code")

        await self._succeed(user_key, user, creds.address, creds.entry_point, ("otp",))
        return LoginResult(user, ("otp",))

    async def _check_limits(
        self, user_key: str, display_user: str, address: str | None, entry_point: str
    ) -> None:
        """
        Raise L{RateLimited} past a limit; otherwise count one check in
        progress for C{user_key}, which the caller must L{_release}.
        """
        reason = await self._limit_reason(user_key, address)
        if reason is None:
            return
        self.log.warn(
            "Login rejected for {user} from {address} via {entry_point}: {reason}",
            user=display_user,
            address=address,
            entry_point=entry_point,
            reason=reason,
        )
        await self.audit.record(
            "login.failed",
            "failure",
            entry_point=entry_point,
            actor=display_user,
            subject=display_user,
            address=address,
            detail=reason,
        )
        raise RateLimited(reason)

    async def _limit_reason(self, user_key: str, address: str | None) -> str | None:
        """
        Return why a login is rejected, or C{None} after counting one check
        in progress for C{user_key}.
        """
        while True:
            address_failures = 0
            if address is not None:
                address_failures = await self.rate_limits.failures(
                    f"addr:{address}", self.window
                )
            # Read last and tested with no await in between. A check that
            # ends records its failure before it stops counting as in
            # progress, and the SQLite store runs calls in order, so no
            # check is missed between this read and the test.
            user_failures = await self.rate_limits.failures(user_key, self.window)

            if user_failures >= self.user_limit:
                return "too many failed attempts for this user"
            if address_failures >= self.address_limit:
                return "too many failed attempts from this address"
            if user_failures + self._in_progress[user_key] < self.user_limit:
                self._in_progress[user_key] += 1
                return None

            waiter: Deferred[None] = Deferred()
            self._waiting.setdefault(user_key, []).append(waiter)
            await waiter

    def _release(self, user_key: str) -> None:
        """
        End a check counted by L{_limit_reason} and let the logins waiting
        for the same user count again.
        """
        self._in_progress[user_key] -= 1
        if self._in_progress[user_key] <= 0:
            del self._in_progress[user_key]
        for waiter in self._waiting.pop(user_key, []):
            waiter.callback(None)

    async def _fail(
        self,
        user_key: str,
        display_user: str,
        creds: PasswordLogin | TOTPLogin,
        reason: str,
    ) -> None:
        await self.rate_limits.add_failure(user_key, self.window)
        if creds.address is not None:
            await self.rate_limits.add_failure(f"addr:{creds.address}", self.window)
        self.log.info(
            "Login failed for {user} from {address} via {entry_point}: {reason}",
            user=display_user,
            address=creds.address,
            entry_point=creds.entry_point,
            reason=reason,
        )
        await self.audit.record(
            "login.failed",
            "failure",
            entry_point=creds.entry_point,
            actor=display_user,
            subject=display_user,
            address=creds.address,
            detail=reason,
        )
        raise LoginFailed(reason)

    async def _succeed(
        self,
        user_key: str,
        user: User,
        address: str | None,
        entry_point: str,
        amr: tuple[str, ...],
        kind: str = "login",
    ) -> None:
        await self.rate_limits.reset(user_key)
        self.log.info(
            "Password check ({kind}) of {user} from {address} via {entry_point}"
            " passed ({methods})",
            kind=kind,
            user=user.username,
            address=address,
            entry_point=entry_point,
            methods="+".join(amr),
        )
        await self.audit.record(
            kind,
            "success",
            entry_point=entry_point,
            actor=user.username,
            subject=user.username,
            address=address,
            detail="+".join(amr),
        )

    async def _spend_hash_time(self, password: str) -> None:
        """
        Verify against a throwaway hash, so an unknown username takes as
        long as a wrong password and response times do not reveal which
        usernames exist.
        """
        hasher = self.directory.hasher
        if self._dummy_hash is None:
            self._dummy_hash = await hasher.hash("unused password for timing")
        await hasher.verify(self._dummy_hash, password)


_LOGIN_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}|[^@\s]{1,64}@[^@\s]{1,255}")


def _looks_like_login(name: str) -> bool:
    """
    Tell whether C{name} has the form of a username or an email address.
    """
    return _LOGIN_NAME.fullmatch(name) is not None


async def _maybe_user(directory: IDirectory, user_id: str) -> User | None:
    try:
        return await directory.get_user(user_id)
    except NotFoundError:
        return None


def _start(coroutine: Coroutine[Any, Any, _T]) -> Deferred[_T]:
    return Deferred.fromCoroutine(coroutine)
