"""
Tests for L{idserver.auth}: the login service behind every entry point.
"""

from __future__ import annotations

import pyotp
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import DeferredList, gatherResults
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from idserver.auth import (
    LoginFailed,
    LoginService,
    PasswordLogin,
    RateLimited,
    TOTPLogin,
    TOTPPolicy,
    TOTPRequired,
)
from idserver.directory.sqlite import SQLiteDirectory, open_directory
from idserver.model import User
from idserver.passwords import Argon2Hasher

PASSWORD = "correct horse battery"


class LoginServiceTests(TestCase):
    """
    Tests for L{LoginService} over a real SQLite directory.
    """

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.hasher = Argon2Hasher(reactor, time_cost=1, memory_cost=8, parallelism=1)
        self.hasher.start()
        self.addCleanup(self.hasher.stop)
        self.directory: SQLiteDirectory = open_directory(
            self.mktemp() + ".sqlite3",
            reactor=reactor,
            hasher=self.hasher,
            clock=self.clock,
        )
        self.addCleanup(self.directory.close)
        self.service = LoginService(
            self.directory,
            self.directory,
            self.directory,
            user_limit=3,
            address_limit=5,
            window=60.0,
        )

    async def addAlice(self, **kwargs: object) -> User:
        user = await self.directory.add_user(
            "alice", "alice@example.com", password=PASSWORD, **kwargs
        )
        return user

    def login(
        self,
        login: str = "alice",
        password: str = PASSWORD,
        address: str = "192.0.2.1",
        **kwargs: object,
    ) -> PasswordLogin:
        return PasswordLogin(login, password, address, "ldap", **kwargs)  # type: ignore[arg-type]

    def currentCode(self, secret: str, offset: int = 0) -> str:
        return pyotp.TOTP(secret).at(self.clock.seconds() + offset * 30)

    def test_interface(self) -> None:
        """
        L{LoginService} provides L{ICredentialsChecker}.
        """
        self.assertTrue(verifyObject(ICredentialsChecker, self.service))

    async def test_passwordByUsernameOrEmail(self) -> None:
        """
        A correct password logs in by username or email, in any case.
        """
        await self.addAlice()
        for name in ("alice", "ALICE", "Alice@Example.com"):
            result = await self.service.authenticate(self.login(name))
            self.assertEqual(result.user.username, "alice")
            self.assertEqual(result.amr, ("pwd",))

    async def test_byUserId(self) -> None:
        """
        A login with C{user_id} set ignores C{login}.
        """
        user = await self.addAlice()
        result = await self.service.authenticate(self.login("nobody", user_id=user.id))
        self.assertEqual(result.user.id, user.id)

    async def test_failures(self) -> None:
        """
        Wrong passwords, empty passwords, unknown and disabled users fail.
        """
        user = await self.addAlice()
        await self.directory.add_user("bob", "bob@example.com", password=PASSWORD)
        bob = await self.directory.user_by_username("bob")
        assert bob is not None
        await self.directory.update_user(bob.id, active=False)

        cases = [
            (self.login(password="wrong password"), "wrong password"),
            (self.login(password=""), "empty password"),
            (self.login("carol"), "unknown user"),
            (self.login("bob"), "user is disabled"),
        ]
        for credentials, reason in cases:
            failure = await self.assertFailure(
                self.service.authenticate(credentials), LoginFailed
            )
            self.assertEqual(failure.reason, reason)
        self.assertEqual(user.username, "alice")

    async def test_failureIsAudited(self) -> None:
        """
        A failed login is an audit event with the user, address and reason,
        and the password is nowhere in it.
        """
        await self.addAlice()
        await self.assertFailure(
            self.service.authenticate(self.login(password="hunter22 secret")),
            LoginFailed,
        )
        [event] = await self.directory.events(kind="login.failed")
        self.assertEqual(event.actor, "alice")
        self.assertEqual(event.address, "192.0.2.1")
        self.assertEqual(event.entry_point, "ldap")
        self.assertEqual(event.detail, "wrong password")
        self.assertNotIn("hunter22", repr(event))

    async def test_unknownNameNotLogged(self) -> None:
        """
        A typed name that cannot be a username or email, such as a password
        typed into the wrong field, does not reach the audit log.
        """
        await self.addAlice()
        await self.assertFailure(
            self.service.authenticate(self.login("Tr0ub4dor&3 x")), LoginFailed
        )
        await self.assertFailure(
            self.service.authenticate(self.login("carol")), LoginFailed
        )
        events = await self.directory.events(kind="login.failed")
        actors = sorted(str(event.actor) for event in events)
        self.assertEqual(actors, ["(not a valid username)", "carol"])

    async def test_userRateLimit(self) -> None:
        """
        Past the per-user limit even the right password fails without a
        check, until the window has passed.
        """
        await self.addAlice()
        for _ in range(3):
            await self.assertFailure(
                self.service.authenticate(self.login(password="bad password")),
                LoginFailed,
            )
        await self.assertFailure(self.service.authenticate(self.login()), RateLimited)

        self.clock.advance(61)
        result = await self.service.authenticate(self.login())
        self.assertEqual(result.user.username, "alice")

    async def test_parallelGuesses(self) -> None:
        """
        Guesses sent in parallel get no more password checks than the
        per-user limit allows.
        """
        await self.addAlice()
        attempts = [
            self.service.authenticate(
                self.login(password=f"guess number {i}", address=f"192.0.2.{i}")
            )
            for i in range(10)
        ]
        outcomes = await DeferredList(attempts, consumeErrors=True)

        reasons = [failure.value.reason for _, failure in outcomes]
        self.assertEqual(reasons.count("wrong password"), 3)
        self.assertEqual(len(reasons), 10)
        self.assertEqual(
            {reason for reason in reasons if reason != "wrong password"},
            {"too many failed attempts for this user"},
        )

        # Every check ended, so once the failures age out alice may log in.
        self.clock.advance(61)
        result = await self.service.authenticate(self.login())
        self.assertEqual(result.user.username, "alice")

    async def test_parallelGuessesTwoServices(self) -> None:
        """
        Two login services of one process, such as the LDAP server's and the
        web login's, share the per-user count of checks in progress.
        """
        await self.addAlice()
        other = LoginService(
            self.directory,
            self.directory,
            self.directory,
            user_limit=3,
            address_limit=5,
            window=60.0,
        )
        attempts = [
            service.authenticate(
                self.login(password=f"guess number {i}", address=f"192.0.2.{i}")
            )
            for i in range(5)
            for service in (self.service, other)
        ]
        outcomes = await DeferredList(attempts, consumeErrors=True)

        reasons = [failure.value.reason for _, failure in outcomes]
        self.assertEqual(reasons.count("wrong password"), 3)

    async def test_parallelLogins(self) -> None:
        """
        Parallel logins with the right password, more than the per-user
        limit, all succeed.
        """
        await self.addAlice()
        attempts = [self.service.authenticate(self.login()) for _ in range(10)]
        results = await gatherResults(attempts)
        self.assertEqual([result.user.username for result in results], ["alice"] * 10)

    async def test_addressRateLimitCountsFailuresOnly(self) -> None:
        """
        The per-address limit counts failures of every user from the address,
        and successes of other users do not reset it.
        """
        await self.addAlice()
        for name in ("u1", "u2", "u3", "u4", "u5"):
            await self.assertFailure(
                self.service.authenticate(self.login(name)), LoginFailed
            )
        await self.assertFailure(self.service.authenticate(self.login()), RateLimited)

        result = await self.service.authenticate(self.login(address="192.0.2.2"))
        self.assertEqual(result.user.username, "alice")

    async def test_successResetsUserCounter(self) -> None:
        """
        A successful login forgets the user's earlier failures.
        """
        await self.addAlice()
        for _ in range(2):
            await self.assertFailure(
                self.service.authenticate(self.login(password="bad password")),
                LoginFailed,
            )
        await self.service.authenticate(self.login())
        for _ in range(2):
            await self.assertFailure(
                self.service.authenticate(self.login(password="bad password")),
                LoginFailed,
            )
        result = await self.service.authenticate(self.login())
        self.assertEqual(result.amr, ("pwd",))

    async def test_totpIfGiven(self) -> None:
        """
        With the C{if_given} policy a code is checked when present, used
        once, and optional otherwise.
        """
        user = await self.addAlice()
        secret = await self.directory.enable_totp(user.id)
        code = self.currentCode(secret)

        result = await self.service.authenticate(self.login(totp=code))
        self.assertEqual(result.amr, ("pwd", "otp"))

        await self.assertFailure(
            self.service.authenticate(self.login(totp=code)), LoginFailed
        )
        await self.assertFailure(
            self.service.authenticate(self.login(totp="000000")), LoginFailed
        )
        result = await self.service.authenticate(self.login())
        self.assertEqual(result.amr, ("pwd",))

    async def test_totpRequired(self) -> None:
        """
        With the C{required} policy a user with 2FA must give a code; a user
        without 2FA need not.
        """
        user = await self.addAlice()
        await self.directory.add_user("bob", "bob@example.com", password=PASSWORD)
        await self.directory.enable_totp(user.id)

        failure = await self.assertFailure(
            self.service.authenticate(self.login(totp_policy=TOTPPolicy.required)),
            LoginFailed,
        )
        self.assertEqual(failure.reason, "TOTP code missing")
        result = await self.service.authenticate(
            self.login("bob", totp_policy=TOTPPolicy.required)
        )
        self.assertEqual(result.user.username, "bob")

    async def test_secondStep(self) -> None:
        """
        With the C{second_step} policy a correct password of a user with 2FA
        raises L{TOTPRequired}; a L{TOTPLogin} then completes the login.
        """
        user = await self.addAlice()
        secret = await self.directory.enable_totp(user.id)

        failure = await self.assertFailure(
            self.service.authenticate(self.login(totp_policy=TOTPPolicy.second_step)),
            TOTPRequired,
        )
        self.assertEqual(failure.user.id, user.id)

        step = TOTPLogin(user.id, self.currentCode(secret), "192.0.2.1", "web")
        result = await self.service.authenticate(step)
        self.assertEqual(result.amr, ("otp",))
        await self.assertFailure(self.service.authenticate(step), LoginFailed)

    async def test_wrongPasswordBeforeTotp(self) -> None:
        """
        A wrong password fails before any 2FA step is offered.
        """
        user = await self.addAlice()
        await self.directory.enable_totp(user.id)
        await self.assertFailure(
            self.service.authenticate(
                self.login(password="bad password", totp_policy=TOTPPolicy.second_step)
            ),
            LoginFailed,
        )

    async def test_reauthenticationAudit(self) -> None:
        """
        A signed-in user confirming their password is audited as a password
        check, not as a login.
        """
        await self.addAlice()
        await self.service.authenticate(self.login(reauthentication=True))
        self.assertEqual(await self.directory.events(kind="login"), [])
        [event] = await self.directory.events(kind="password.check")
        self.assertEqual(event.actor, "alice")
        self.assertEqual(event.outcome, "success")

    async def test_requestAvatarId(self) -> None:
        """
        As a cred checker the service returns the user id in UTF-8.
        """
        user = await self.addAlice()
        avatar = await self.service.requestAvatarId(self.login())
        self.assertEqual(avatar, user.id.encode("utf-8"))

    def test_reprHidesSecrets(self) -> None:
        """
        The credentials' repr shows neither the password nor the code.
        """
        text = repr(self.login(password="s3cret pass", totp="123456"))
        self.assertNotIn("s3cret", text)
        self.assertNotIn("123456", text)
        self.assertNotIn("654321", repr(TOTPLogin("uid-1", "654321", None, "web")))
