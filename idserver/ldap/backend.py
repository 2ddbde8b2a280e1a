"""
The LDAP server's view of the directory: cached snapshots and settings
that follow L{IDirectory.revision}, and binds mapped onto the login service.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from idserver.auth import LoginFailed, LoginService, PasswordLogin, TOTPPolicy
from idserver.errors import HasherBusyError
from idserver.interfaces import IAuditLog, IDirectory, IRateLimitStore
from idserver.ldap.access import AccessPolicy, check_generated_secret, is_generated_hash
from idserver.ldap.dn import DN, InvalidDN, format_dn, normalize_parsed, parse_dn
from idserver.ldap.entries import Snapshot, user_dn
from idserver.ldap.messages import LDAPError, ResultCode

__all__ = [
    "AdminTarget",
    "BindIdentity",
    "DirectoryClosed",
    "LDAPBackend",
    "UserTarget",
    "bind_target",
    "loggable_dn",
]

_T = TypeVar("_T")

_USER_ID = re.compile(
    r"uid-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
_TOTP_TYPE = "totptoken"


@dataclass(frozen=True)
class AdminTarget:
    """
    A bind DN naming the admin service account.
    """


@dataclass(frozen=True)
class UserTarget:
    """
    A bind DN naming a user, by id (C{user_id}) or by username or email
    (C{login}), with the TOTP code given in the DN, if any.
    """

    user_id: str | None
    login: str | None
    totp: str | None

    def __repr__(self) -> str:
        return f"UserTarget(user_id={self.user_id!r}, login={self.login!r})"


@dataclass(frozen=True)
class BindIdentity:
    """
    The identity a connection is bound as.

    @ivar dn: the DN of the identity, as Who am I? returns it.
    @ivar user_id: the user's id, or C{None} for the admin account.
    """

    dn: str
    user_id: str | None


def bind_target(name: str, suffix: DN) -> AdminTarget | UserTarget | None:
    """
    Map a bind DN onto the account it names.

    Accepted forms, below C{suffix}: C{cn=admin,ou=system}; below
    C{ou=users}, C{cn=<user id>}, C{cn=<username>}, C{cn=<email>},
    C{mail=<email>}, C{uid=<username>} and C{uid=<user id>}, each
    optionally with a C{+totpToken=<code>} value in the same RDN.

    @return: the target, or C{None} when the DN names no account.
    @raise InvalidDN: C{name} is not a DN.
    """
    parsed = parse_dn(name)
    if len(parsed) != len(suffix) + 2:
        return None
    if normalize_parsed(parsed[2:]) != normalize_parsed(suffix):
        return None
    leaf, container = parsed[0], parsed[1]
    if len(container) != 1:
        return None
    container_type, container_value = container[0]
    container_value = container_value.lower()

    if container_type == "ou" and container_value == "system":
        if len(leaf) == 1 and leaf[0][0] == "cn" and leaf[0][1].lower() == "admin":
            return AdminTarget()
        return None
    if container_type != "ou" or container_value != "users":
        return None

    totp_values = [value for kind, value in leaf if kind == _TOTP_TYPE]
    names = [(kind, value.strip()) for kind, value in leaf if kind != _TOTP_TYPE]
    if len(totp_values) > 1 or len(names) != 1:
        return None
    totp = totp_values[0].strip() if totp_values else None
    kind, value = names[0]
    if not value:
        return None
    if kind in ("cn", "uid"):
        if _USER_ID.fullmatch(value.lower()):
            return UserTarget(value.lower(), None, totp)
        return UserTarget(None, value, totp)
    if kind == "mail" and "@" in value:
        return UserTarget(None, value, totp)
    return None


def loggable_dn(name: str) -> str:
    """
    Return a bind DN fit for a log: without the values of C{totpToken}
    components, which contain one-time codes, nor of any other component
    after the first of an RDN, where a misspelled C{totpToken} would be.
    """
    try:
        parsed = parse_dn(name)
    except InvalidDN:
        return "<invalid DN>"
    return format_dn(
        tuple(
            tuple(
                (kind, "***" if kind == _TOTP_TYPE or index > 0 else value)
                for index, (kind, value) in enumerate(rdn)
            )
            for rdn in parsed
        )
    )


class DirectoryClosed(RuntimeError):
    """
    The directory is not open (the daemon is starting or stopping).
    """


class LDAPBackend:
    """
    Snapshots, settings and binds for the LDAP server.

    The snapshot and the settings are reloaded when the directory's
    revision changes, so a change made elsewhere (the command line, the
    dashboard, a sync) is visible to the next request. A snapshot is built
    in a thread so the reactor keeps serving meanwhile.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorThreads,
        directory: IDirectory | Callable[[], IDirectory | None],
        *,
        suffix: str,
        login: LoginService | None = None,
    ) -> None:
        """
        @param directory: the directory, or a function returning it, for a
            daemon that opens the directory after building its listeners;
            the function returns C{None} while the directory is closed.
        @param login: the login service for user binds; by default one over
            the directory, which also serves as audit log and rate-limit
            store.
        """
        self._reactor = reactor
        if IDirectory.providedBy(directory):
            self._directory_source: Callable[[], IDirectory | None] = lambda: directory
        else:
            self._directory_source = directory  # type: ignore[assignment]
        self._login = login
        self._login_service: LoginService | None = None
        self._login_directory: IDirectory | None = None
        self.suffix_dn = parse_dn(suffix)
        self.suffix = format_dn(self.suffix_dn)
        self._snapshot: Snapshot | None = None
        # The one snapshot load in flight, and the requests of a newer
        # revision that wait for the load after it.
        self._snapshot_loading: _SharedLoad[Snapshot] | None = None
        self._snapshot_next: list[Deferred[Snapshot]] = []
        self._policy: tuple[int, AccessPolicy] | None = None
        self._policy_loading: _SharedLoad[AccessPolicy] | None = None

    @property
    def directory(self) -> IDirectory:
        """
        The directory.

        @raise DirectoryClosed: it is not open.
        """
        directory = self._directory_source()
        if directory is None:
            raise DirectoryClosed("the directory is not open")
        return directory

    @property
    def login(self) -> LoginService:
        """
        The login service that checks user binds.
        """
        if self._login is not None:
            return self._login
        directory = self.directory
        if self._login_service is None or self._login_directory is not directory:
            self._login_service = LoginService(
                directory, IAuditLog(directory), IRateLimitStore(directory)
            )
            self._login_directory = directory
        return self._login_service

    # Snapshots and settings

    def current_snapshot(self) -> Snapshot | None:
        """
        Return the snapshot of the current revision if it is loaded.
        """
        snapshot = self._snapshot
        directory = self._directory_source()
        if snapshot is not None and directory is not None:
            if snapshot.revision == directory.revision():
                return snapshot
        return None

    def snapshot(self) -> Deferred[Snapshot]:
        """
        Return the snapshot of the current revision, loading it if needed.

        One snapshot is loaded at a time. A request made while an older
        revision loads waits for the load that follows, which starts at the
        newest revision then, so a burst of changes (a sync) costs one
        rebuild after another instead of one per request in parallel.
        """
        try:
            revision = self.directory.revision()
        except DirectoryClosed as e:
            return fail(e)
        snapshot = self._snapshot
        if snapshot is not None and snapshot.revision == revision:
            return succeed(snapshot)
        loading = self._snapshot_loading
        if loading is None:
            return self._start_snapshot_load(revision).wait()
        if loading.revision == revision:
            return loading.wait()
        waiter: Deferred[Snapshot] = Deferred()
        self._snapshot_next.append(waiter)
        return waiter

    def _start_snapshot_load(self, revision: int) -> _SharedLoad[Snapshot]:
        loading = _SharedLoad(revision, self._load_snapshot(revision))
        self._snapshot_loading = loading
        loading.wait().addBoth(self._snapshot_loaded)
        return loading

    def _snapshot_loaded(self, result: object) -> None:
        # The failure, if any, reaches the waiters of the load itself.
        self._snapshot_loading = None
        waiters, self._snapshot_next = self._snapshot_next, []
        if not waiters:
            return
        try:
            revision = self.directory.revision()
        except DirectoryClosed as e:
            for waiter in waiters:
                waiter.errback(e)
            return
        loading = self._start_snapshot_load(revision)
        for waiter in waiters:
            loading.wait().chainDeferred(waiter)

    async def _load_snapshot(self, revision: int) -> Snapshot:
        # NOTE: every change rebuilds the whole snapshot, which takes about a
        # second for 10,000 users. Searches during a long sync therefore keep
        # waiting for rebuilds, which an incremental update would avoid.
        users = await self.directory.list_users()
        groups = await self.directory.list_groups()
        pool = self._reactor.getThreadPool()
        snapshot: Snapshot = await deferToThreadPool(
            self._reactor, pool, Snapshot, self.suffix, users, groups, revision
        )
        self.log.debug(
            "Loaded {users} users and {groups} groups at revision {revision}",
            users=len(users),
            groups=len(groups),
            revision=revision,
        )
        self._snapshot = snapshot
        return snapshot

    def current_policy(self) -> AccessPolicy | None:
        """
        Return the access policy of the current revision if it is loaded.
        """
        policy = self._policy
        directory = self._directory_source()
        if policy is not None and directory is not None:
            if policy[0] == directory.revision():
                return policy[1]
        return None

    def policy(self) -> Deferred[AccessPolicy]:
        """
        Return the access policy of the current revision, loading the
        settings if needed.
        """
        current = self.current_policy()
        if current is not None:
            return succeed(current)
        try:
            revision = self.directory.revision()
        except DirectoryClosed as e:
            return fail(e)
        loading = self._policy_loading
        if loading is None or loading.revision != revision or loading.failed:
            loading = _SharedLoad(revision, self._load_policy(revision))
            self._policy_loading = loading
        return loading.wait()

    async def _load_policy(self, revision: int) -> AccessPolicy:
        settings = await self.directory.get_settings()
        policy = AccessPolicy.from_settings(settings)
        self._policy = (revision, policy)
        return policy

    # Binds

    async def bind(
        self, name: str, password: bytes, address: str | None
    ) -> BindIdentity:
        """
        Check a simple bind with a non-empty DN and password.

        @raise LDAPError: invalidDNSyntax for a malformed DN,
            invalidCredentials (49) for every failure that concerns the
            credentials (unknown DN, wrong password or TOTP code, inactive
            user, rate limit), busy (51) when the hashing queue is full.
        """
        try:
            target = bind_target(name, self.suffix_dn)
        except InvalidDN:
            raise LDAPError(ResultCode.invalidDNSyntax, "invalid bind DN") from None
        try:
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            secret = None

        if target is None or secret is None:
            reason = "no such account" if target is None else "password is not UTF-8"
            self.log.info(
                "LDAP bind failed for {dn} from {address}: {reason}",
                dn=loggable_dn(name),
                address=address,
                reason=reason,
            )
            raise _invalid_credentials()
        if isinstance(target, AdminTarget):
            return await self._bind_admin(secret, address)
        return await self._bind_user(target, secret, address)

    async def _bind_user(
        self, target: UserTarget, password: str, address: str | None
    ) -> BindIdentity:
        policy = await self.policy()
        credentials = PasswordLogin(
            login=target.login or "",
            password=password,
            address=address,
            entry_point="ldap",
            totp=target.totp,
            totp_policy=TOTPPolicy.required
            if policy.require_2fa
            else TOTPPolicy.if_given,
            user_id=target.user_id,
        )
        try:
            result = await self.login.authenticate(credentials)
        except LoginFailed:
            # The login service has logged the reason and counted the
            # failure.
            raise _invalid_credentials() from None
        except HasherBusyError:
            raise LDAPError(ResultCode.busy, "the server is busy, try again") from None
        return BindIdentity(user_dn(result.user.id, self.suffix), result.user.id)

    async def _bind_admin(self, secret: str, address: str | None) -> BindIdentity:
        login = self.login
        address_key = f"addr:{address}" if address is not None else None
        if address_key is not None:
            failures = await login.rate_limits.failures(address_key, login.window)
            if failures >= login.address_limit:
                await self._admin_failed(
                    address, "too many failed attempts from this address", count=False
                )

        policy = await self.policy()
        stored = policy.secret_hash
        if stored is None:
            matches = False
        elif is_generated_hash(stored):
            matches = check_generated_secret(stored, secret)
        else:
            try:
                matches, _ = await self.directory.hasher.verify(stored, secret)
            except HasherBusyError:
                raise LDAPError(
                    ResultCode.busy, "the server is busy, try again"
                ) from None
        if not matches:
            reason = "no admin secret is set" if stored is None else "wrong secret"
            await self._admin_failed(address, reason, count=True)
        return BindIdentity(f"cn=admin,ou=system,{self.suffix}", None)

    async def _admin_failed(
        self, address: str | None, reason: str, *, count: bool
    ) -> None:
        login = self.login
        if count and address is not None:
            await login.rate_limits.add_failure(f"addr:{address}", login.window)
        self.log.info(
            "LDAP bind failed for the admin DN from {address}: {reason}",
            address=address,
            reason=reason,
        )
        await login.audit.record(
            "login.failed",
            "failure",
            entry_point="ldap",
            actor="cn=admin,ou=system",
            subject="cn=admin,ou=system",
            address=address,
            detail=reason,
        )
        raise _invalid_credentials()


def _invalid_credentials() -> LDAPError:
    return LDAPError(ResultCode.invalidCredentials, "invalid credentials")


class _SharedLoad(Generic[_T]):
    """
    One load in progress, with any number of waiters. A failed load is
    reported to its waiters and then replaced by the next request.
    """

    def __init__(self, revision: int, coroutine: Coroutine[Any, Any, _T]) -> None:
        self.revision = revision
        self.failed = False
        self._waiters: list[Deferred[_T]] = []
        self._result: _T | Failure | None = None
        self._done = False
        Deferred.fromCoroutine(coroutine).addBoth(self._fire)

    def _fire(self, result: _T | Failure) -> None:
        self._done = True
        self._result = result
        self.failed = isinstance(result, Failure)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    def wait(self) -> Deferred[_T]:
        if self._done:
            if isinstance(self._result, Failure):
                return fail(self._result)
            return succeed(self._result)  # type: ignore[arg-type]
        waiter: Deferred[_T] = Deferred()
        self._waiters.append(waiter)
        return waiter
