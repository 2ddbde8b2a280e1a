"""
Tests for L{idserver.ldap.backend}: bind DNs mapped to accounts, binds
checked against a real SQLite directory, and snapshots that follow the
directory's revision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from idserver.auth import LoginService
from idserver.errors import HasherBusyError
from idserver.interfaces import IPasswordHasher
from idserver.ldap.access import (
    ALLOWLIST_KEY,
    ENABLED_KEY,
    SECRET_HASH_KEY,
    hash_generated_secret,
)
from idserver.ldap.backend import (
    AdminTarget,
    DirectoryClosed,
    LDAPBackend,
    UserTarget,
    bind_target,
    loggable_dn,
)
from idserver.ldap.dn import InvalidDN, parse_dn
from idserver.ldap.messages import LDAPError, ResultCode

from .ldaphelpers import CHEAP_ARGON2

SUFFIX = "dc=cloudron"
USERS = "ou=users,dc=cloudron"
ADMIN = "cn=admin,ou=system,dc=cloudron"
PASSWORD = "correct horse battery"
USER_ID = "uid-0b6f2bd1-8c0e-4e53-9d43-5b8f64a53a11"


def get_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class BindTargetTests(SynchronousTestCase):
    """
    Tests for L{bind_target}.
    """

    def target(self, name: str) -> AdminTarget | UserTarget | None:
        return bind_target(name, parse_dn(SUFFIX))

    def test_admin(self) -> None:
        """
        The admin DN names the admin account, in any case.
        """
        self.assertEqual(self.target(ADMIN), AdminTarget())
        self.assertEqual(self.target("CN=Admin, OU=System, DC=Cloudron"), AdminTarget())

    def test_user_forms(self) -> None:
        """
        Each accepted form names the user by id or by login name.
        """
        for name, expected in [
            (f"cn={USER_ID},{USERS}", UserTarget(USER_ID, None, None)),
            (f"cn={USER_ID.upper()},{USERS}", UserTarget(USER_ID, None, None)),
            (f"uid={USER_ID},{USERS}", UserTarget(USER_ID, None, None)),
            (f"cn=alice,{USERS}", UserTarget(None, "alice", None)),
            (f"uid=alice,{USERS}", UserTarget(None, "alice", None)),
            (
                f"cn=alice@example.com,{USERS}",
                UserTarget(None, "alice@example.com", None),
            ),
            (
                f"mail=alice@example.com,{USERS}",
                UserTarget(None, "alice@example.com", None),
            ),
            (f"cn=alice+totpToken=123456,{USERS}", UserTarget(None, "alice", "123456")),
            (
                f"totpToken=123456+uid=alice,{USERS}",
                UserTarget(None, "alice", "123456"),
            ),
        ]:
            with self.subTest(name=name):
                self.assertEqual(self.target(name), expected)

    def test_no_account(self) -> None:
        """
        Other names name no account.
        """
        for name in [
            f"cn=alice,ou=groups,{SUFFIX}",
            "cn=alice,ou=users,dc=example",
            f"cn=alice,ou=people,{SUFFIX}",
            f"mail=alice,{USERS}",
            f"sn=alice,{USERS}",
            f"cn=alice+totpToken=1+totpToken=2,{USERS}",
            f"cn=alice+uid=bob,{USERS}",
            f"cn=root,ou=system,{SUFFIX}",
            f"cn=x,cn=alice,{USERS}",
            USERS,
        ]:
            with self.subTest(name=name):
                self.assertIsNone(self.target(name))

    def test_invalid(self) -> None:
        """
        A malformed name raises L{InvalidDN}.
        """
        self.assertRaises(InvalidDN, self.target, "cn=alice,=x")

    def test_loggable(self) -> None:
        """
        TOTP codes, also under a misspelled attribute, are masked in names
        written to logs.
        """
        self.assertEqual(
            loggable_dn(f"cn=alice+totpToken=123456,{USERS}"),
            f"cn=alice+totptoken=***,{USERS}",
        )
        self.assertEqual(
            loggable_dn(f"cn=alice+toptoken=654321,{USERS}"),
            f"cn=alice+toptoken=***,{USERS}",
        )
        self.assertEqual(loggable_dn("x=\\"), "<invalid DN>")


@implementer(IPasswordHasher)
class SwitchableHasher:
    """
    A hasher that can be made to report a full queue.
    """

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        self.busy = False

    def hash(self, secret: str) -> Deferred[str]:
        if self.busy:
            return fail(HasherBusyError())
        result: Deferred[str] = self.wrapped.hash(secret)
        return result

    def verify(self, encoded: str, secret: str) -> Deferred[tuple[bool, str | None]]:
        if self.busy:
            return fail(HasherBusyError())
        result: Deferred[tuple[bool, str | None]] = self.wrapped.verify(encoded, secret)
        return result


class BackendTests(TestCase):
    """
    Tests for L{LDAPBackend} over a real SQLite directory.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        from idserver.directory.sqlite import open_directory
        from idserver.passwords import Argon2Hasher

        reactor = get_reactor()
        hasher = Argon2Hasher(reactor, **CHEAP_ARGON2)
        hasher.start()
        self.addCleanup(hasher.stop)
        self.hasher = SwitchableHasher(hasher)
        directory = self.directory = open_directory(
            self.database_path(), reactor=reactor, hasher=self.hasher
        )
        self.addCleanup(directory.close)
        self.alice = await directory.add_user(
            "alice", "alice@example.com", password=PASSWORD
        )
        await directory.set_setting(ENABLED_KEY, True)
        await directory.set_setting(ALLOWLIST_KEY, ["127.0.0.1"])
        await directory.set_setting(SECRET_HASH_KEY, hash_generated_secret("generated"))
        self.login = LoginService(
            directory, directory, directory, user_limit=3, address_limit=5
        )
        self.backend = LDAPBackend(reactor, directory, suffix=SUFFIX, login=self.login)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def database_path(self) -> str:
        base = Path(self.mktemp())
        base.mkdir(parents=True)
        return str(base / "idserver.sqlite3")

    async def fails(
        self, code: ResultCode, name: str, password: str, address: str = "127.0.0.1"
    ) -> LDAPError:
        try:
            await self.backend.bind(name, password.encode(), address)
        except LDAPError as e:
            self.assertEqual(e.code, code)
            return e
        raise AssertionError(f"the bind of {name} succeeded")

    async def test_user(self) -> None:
        """
        A user's bind returns the user's entry DN.
        """
        identity = await self.backend.bind(
            f"uid=alice,{USERS}", PASSWORD.encode(), None
        )
        self.assertEqual(identity.dn, f"cn={self.alice.id},{USERS}")
        self.assertEqual(identity.user_id, self.alice.id)

    async def test_user_failures(self) -> None:
        """
        Wrong passwords, unknown accounts and passwords that are not UTF-8
        are invalidCredentials; failures are logged with the address.
        """
        await self.fails(ResultCode.invalidCredentials, f"uid=alice,{USERS}", "wrong")
        await self.fails(ResultCode.invalidCredentials, f"uid=nobody,{USERS}", PASSWORD)
        await self.fails(
            ResultCode.invalidCredentials, f"cn=x,ou=else,{SUFFIX}", PASSWORD
        )
        try:
            await self.backend.bind(f"uid=alice,{USERS}", b"\xff\xfe", "127.0.0.1")
        except LDAPError as e:
            self.assertEqual(e.code, ResultCode.invalidCredentials)
        await self.fails(ResultCode.invalidDNSyntax, "uid=alice,=", PASSWORD)
        logged = [e for e in self.events if "failed" in e.get("log_format", "")]
        self.assertTrue(all(e.get("address") == "127.0.0.1" for e in logged))
        self.assertTrue(any(e.get("reason") == "wrong password" for e in logged))

    async def test_admin_generated(self) -> None:
        """
        The admin DN binds with the generated secret.
        """
        identity = await self.backend.bind(ADMIN, b"generated", "127.0.0.1")
        self.assertEqual((identity.dn, identity.user_id), (ADMIN, None))
        await self.fails(ResultCode.invalidCredentials, ADMIN, "generated!")

    async def test_admin_chosen(self) -> None:
        """
        A chosen secret is stored as argon2id and checked with the hasher.
        """
        await self.directory.set_setting(
            SECRET_HASH_KEY, await self.directory.hasher.hash("chosen secret")
        )
        identity = await self.backend.bind(ADMIN, b"chosen secret", None)
        self.assertEqual(identity.dn, ADMIN)
        await self.fails(ResultCode.invalidCredentials, ADMIN, "generated")

    async def test_admin_without_secret(self) -> None:
        """
        Without a stored secret the admin DN cannot bind.
        """
        await self.directory.set_setting(SECRET_HASH_KEY, "")
        await self.fails(ResultCode.invalidCredentials, ADMIN, "")

    async def test_admin_rate_limit(self) -> None:
        """
        Failed admin binds count against the address; past the limit even
        the right secret fails, and other addresses are not affected. The
        failures are audit events.
        """
        for _ in range(5):
            await self.fails(ResultCode.invalidCredentials, ADMIN, "wrong", "192.0.2.1")
        await self.fails(ResultCode.invalidCredentials, ADMIN, "generated", "192.0.2.1")
        await self.backend.bind(ADMIN, b"generated", "192.0.2.2")
        events = await self.directory.events(kind="login.failed")
        self.assertEqual(events[0].detail, "too many failed attempts from this address")
        self.assertEqual(events[0].address, "192.0.2.1")
        self.assertEqual(events[0].entry_point, "ldap")

    async def test_user_rate_limit(self) -> None:
        """
        Past the per-user limit, a user's right password fails.
        """
        for _ in range(3):
            await self.fails(
                ResultCode.invalidCredentials, f"uid=alice,{USERS}", "wrong"
            )
        await self.fails(ResultCode.invalidCredentials, f"uid=alice,{USERS}", PASSWORD)

    async def test_busy(self) -> None:
        """
        A full hashing queue makes binds fail with busy.
        """
        self.hasher.busy = True
        await self.fails(ResultCode.busy, f"uid=alice,{USERS}", PASSWORD)
        await self.directory.set_setting(
            SECRET_HASH_KEY, "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"
        )
        await self.fails(ResultCode.busy, ADMIN, "secret")

    async def test_snapshot_follows_revision(self) -> None:
        """
        The snapshot is reused until the directory changes, then reloaded.
        """
        first = await self.backend.snapshot()
        self.assertIs(self.backend.current_snapshot(), first)
        self.assertIs(await self.backend.snapshot(), first)
        await self.directory.add_user("bob", "bob@example.com")
        self.assertIsNone(self.backend.current_snapshot())
        waiting = [self.backend.snapshot(), self.backend.snapshot()]
        second = await waiting[0]
        self.assertIs(await waiting[1], second)
        self.assertEqual(len(second.users), 2)

    async def test_one_snapshot_load_at_a_time(self) -> None:
        """
        Requests for newer revisions made while a snapshot loads wait for
        one load after it, at the newest revision, instead of starting
        their own loads in parallel.
        """
        gates: list[Deferred[None]] = []
        running = [0, 0]  # loads in flight now, and at most
        load = self.backend._load_snapshot

        async def gated(revision: int) -> Any:
            running[0] += 1
            running[1] = max(running)
            gate: Deferred[None] = Deferred()
            gates.append(gate)
            await gate
            try:
                return await load(revision)
            finally:
                running[0] -= 1

        self.patch(self.backend, "_load_snapshot", gated)
        first = self.backend.snapshot()
        same = self.backend.snapshot()
        await self.directory.add_user("bob", "bob@example.com")
        newer = [self.backend.snapshot(), self.backend.snapshot()]
        await self.directory.add_user("carol", "carol@example.com")
        newer.append(self.backend.snapshot())
        self.assertEqual(len(gates), 1)

        gates[0].callback(None)
        self.assertIs(await same, await first)
        self.assertEqual(len(gates), 2)
        gates[1].callback(None)
        latest = await newer[0]
        for waiting in newer[1:]:
            self.assertIs(await waiting, latest)
        self.assertEqual(len(latest.users), 3)
        self.assertIs(self.backend.current_snapshot(), latest)
        self.assertEqual(running, [0, 1])

    async def test_policy_follows_revision(self) -> None:
        """
        Settings changes are seen by the next policy check.
        """
        self.assertTrue((await self.backend.policy()).allows("127.0.0.1"))
        await self.directory.set_setting(ENABLED_KEY, False)
        self.assertIsNone(self.backend.current_policy())
        self.assertFalse((await self.backend.policy()).allows("127.0.0.1"))

    async def test_directory_closed(self) -> None:
        """
        While the directory is closed, loads fail with L{DirectoryClosed}.
        """
        backend = LDAPBackend(get_reactor(), lambda: None, suffix=SUFFIX)
        self.assertIsNone(backend.current_policy())
        self.assertIsNone(backend.current_snapshot())
        await self.assertFailure(backend.policy(), DirectoryClosed)
        await self.assertFailure(backend.snapshot(), DirectoryClosed)
