"""
Contract tests that every backend of L{IDirectory}, L{IAuditLog} and
L{IRateLimitStore} must pass.

A backend's test module mixes these into a L{twisted.trial.unittest.TestCase}
and implements the hooks. The tests are C{async def} methods, which trial
runs on the reactor.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

import pyotp
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from idserver.errors import (
    ConflictError,
    DirectoryError,
    LastAdminError,
    NotFoundError,
    ReadOnlyError,
    ValidationError,
)
from idserver.interfaces import (
    IAuditLog,
    IDirectory,
    IPasswordHasher,
    IRateLimitStore,
)
from idserver.model import Role, Source, User
from idserver.validation import RESERVED_USERNAMES, SETTINGS_DEFAULTS

if TYPE_CHECKING:
    from twisted.trial.unittest import TestCase

    _Base = TestCase
else:
    _Base = object

__all__ = [
    "AuditLogContractMixin",
    "ContractBase",
    "DirectoryContractMixin",
    "RateLimitStoreContractMixin",
    "RecordingHasher",
    "START_TIME",
]

# The clock starts in the middle of a 30-second TOTP step, so that codes of
# the steps before and after are 15 seconds away.
START_TIME = 1_700_000_015.0

_UUID4 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)

_E = TypeVar("_E", bound=BaseException)


@implementer(IPasswordHasher)
class RecordingHasher:
    """
    An L{IPasswordHasher} that passes calls on and records the results of
    L{verify}.

    @ivar verified: C{(matches, new_hash)} of each verification.
    """

    def __init__(self, wrapped: IPasswordHasher) -> None:
        self.wrapped = wrapped
        self.verified: list[tuple[bool, str | None]] = []

    def hash(self, secret: str) -> Deferred[str]:
        return self.wrapped.hash(secret)

    def verify(self, encoded: str, secret: str) -> Deferred[tuple[bool, str | None]]:
        def record(result: tuple[bool, str | None]) -> tuple[bool, str | None]:
            self.verified.append(result)
            return result

        return self.wrapped.verify(encoded, secret).addCallback(record)


class ContractBase(_Base):
    """
    Helpers shared by the contract mixins.

    @ivar clock: the clock the backend under test must read the time from,
        set to L{START_TIME} before the backend is made.
    """

    clock: Clock

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START_TIME)

    async def fails(self, error_type: type[_E], awaitable: Awaitable[Any]) -> _E:
        """
        Await C{awaitable} and return the error it fails with, which must be
        an instance of C{error_type}.
        """
        try:
            result = await awaitable
        except error_type as error:
            return error
        raise self.failureException(
            f"Expected {error_type.__name__}, got the result {result!r}"
        )


class DirectoryContractMixin(ContractBase):
    """
    Tests of the L{IDirectory} contract.

    Hooks: C{makeDirectory()} returns a new, empty, writable directory that
    reads the time from C{self.clock}; C{makeHasher(time_cost)} returns a
    started L{IPasswordHasher} with cheap parameters and the given number of
    argon2 passes.
    """

    def makeDirectory(self) -> IDirectory:
        raise NotImplementedError()

    def makeHasher(self, time_cost: int) -> IPasswordHasher:
        raise NotImplementedError()

    async def add_admin(self, directory: IDirectory, username: str = "root1") -> User:
        return await directory.add_user(
            username, f"{username}@example.com", role="admin"
        )

    def totp_code(self, secret: str, offset: float = 0) -> str:
        """
        Return the TOTP code of C{secret} at the clock's time plus C{offset}
        seconds.
        """
        return pyotp.TOTP(secret).at(self.clock.seconds() + offset)

    def test_interface(self) -> None:
        """
        The directory provides L{IDirectory}.
        """
        self.assertTrue(verifyObject(IDirectory, self.makeDirectory()))

    # Adding users

    async def test_add_user(self) -> None:
        """
        A new user gets a uid- id, lower-cased names, a POSIX id from 10000
        up and the clock's time; the email counts as verified.
        """
        directory = self.makeDirectory()
        user = await directory.add_user(
            "Alice",
            "Alice@Example.COM",
            display_name="  Alice   Liddell ",
            fallback_email="Alice@Home.Example",
        )

        self.assertTrue(user.id.startswith("uid-"))
        self.assertRegex(user.id[4:], _UUID4)
        self.assertEqual(user.username, "alice")
        self.assertEqual(user.email, "alice@example.com")
        self.assertEqual(user.fallback_email, "alice@home.example")
        self.assertEqual(user.display_name, "Alice Liddell")
        self.assertIs(user.role, Role.user)
        self.assertTrue(user.active)
        self.assertIs(user.source, Source.local)
        self.assertIsNone(user.external_id)
        self.assertFalse(user.totp_enabled)
        self.assertTrue(user.email_verified)
        self.assertFalse(user.has_password)

        self.assertGreaterEqual(user.uid_number, 10000)
        self.assertEqual(user.created_at.timestamp(), START_TIME)
        self.assertEqual(user.updated_at, user.created_at)
        self.assertIsNone(user.password_changed_at)
        self.assertEqual(user.groups, ())
        self.assertEqual(await directory.get_user(user.id), user)

    async def test_add_user_options(self) -> None:
        """
        Role, active state, source, external id and password are stored.
        """
        directory = self.makeDirectory()
        user = await directory.add_user(
            "bob",
            "bob@example.com",
            role="admin",
            active=False,
            source="ldap",
            external_id="5b0c1e9a-0000-4000-8000-000000000001",
            password="correct horse",
        )
        self.assertIs(user.role, Role.admin)
        self.assertFalse(user.active)
        self.assertIs(user.source, Source.ldap)
        self.assertEqual(user.external_id, "5b0c1e9a-0000-4000-8000-000000000001")
        self.assertTrue(user.has_password)
        assert user.password_changed_at is not None
        self.assertEqual(user.password_changed_at.timestamp(), START_TIME)
        self.assertTrue(await directory.check_password(user.id, "correct horse"))

    async def test_uid_numbers_never_reused(self) -> None:
        """
        POSIX ids are unique and a deleted user's id is not given out again.
        """
        directory = self.makeDirectory()
        first = await directory.add_user("carol", "carol@example.com")
        second = await directory.add_user("dave", "dave@example.com")
        self.assertNotEqual(first.uid_number, second.uid_number)
        await directory.delete_user(second.id)
        third = await directory.add_user("erin", "erin@example.com")
        self.assertNotIn(third.uid_number, (first.uid_number, second.uid_number))

    async def test_invalid_usernames(self) -> None:
        """
        Usernames that break the character rules are rejected.
        """
        directory = self.makeDirectory()
        for name in ["", "  ", "-bob", ".bob", "bob smith", "bob@x", "b" * 65, "béa"]:
            error = await self.fails(
                ValidationError, directory.add_user(name, "x@example.com")
            )
            self.assertEqual(error.field, "username", name)
        self.assertEqual(await directory.count_users(), 0)

    async def test_reserved_usernames(self) -> None:
        """
        Reserved usernames are rejected in any case.
        """
        directory = self.makeDirectory()
        for name in sorted(RESERVED_USERNAMES) + ["ADMIN", "Root"]:
            error = await self.fails(
                ValidationError, directory.add_user(name, "x@example.com")
            )
            self.assertEqual(error.field, "username", name)

    async def test_longest_username(self) -> None:
        """
        A username of 64 characters is accepted.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("a" * 64, "long@example.com")
        self.assertEqual(user.username, "a" * 64)

    async def test_invalid_values(self) -> None:
        """
        Invalid emails, fallback emails, roles, sources and display names
        are rejected with the field they concern.
        """
        directory = self.makeDirectory()
        cases: list[tuple[dict[str, Any], str]] = [
            ({"email": "not-an-address"}, "email"),
            ({"email": ""}, "email"),
            ({"fallback_email": "nope"}, "fallback_email"),
            ({"role": "superuser"}, "role"),
            ({"source": "nis"}, "source"),
            ({"display_name": "bad\x00name"}, "display_name"),
        ]
        for change, field in cases:
            arguments: dict[str, Any] = {"email": "frank@example.com"}
            arguments.update(change)
            email = arguments.pop("email")
            error = await self.fails(
                ValidationError, directory.add_user("frank", email, **arguments)
            )
            self.assertEqual(error.field, field, change)
        self.assertIsNone(await directory.user_by_username("frank"))

    async def test_invalid_password(self) -> None:
        """
        A password that is too short or equals the username is rejected and
        no user is created.
        """
        directory = self.makeDirectory()
        for password in ["short", "Grace123", "GRACE123"]:
            error = await self.fails(
                ValidationError,
                directory.add_user("grace123", "grace@example.com", password=password),
            )
            self.assertEqual(error.field, "password", password)
        self.assertIsNone(await directory.user_by_username("grace123"))

    async def test_duplicate_username(self) -> None:
        """
        A username that is taken, in any case, is a conflict.
        """
        directory = self.makeDirectory()
        await directory.add_user("heidi", "heidi@example.com")
        error = await self.fails(
            ConflictError, directory.add_user("HEIDI", "other@example.com")
        )
        self.assertEqual(error.field, "username")

    async def test_duplicate_email(self) -> None:
        """
        An email address that is taken, in any case, is a conflict.
        """
        directory = self.makeDirectory()
        await directory.add_user("ivan", "ivan@example.com")
        error = await self.fails(
            ConflictError, directory.add_user("ivan2", "IVAN@example.com")
        )
        self.assertEqual(error.field, "email")
        self.assertIsNone(await directory.user_by_username("ivan2"))

    async def test_duplicate_external_id(self) -> None:
        """
        Two users cannot have the same external id.
        """
        directory = self.makeDirectory()
        await directory.add_user(
            "judy", "judy@example.com", source="ldap", external_id="ext-1"
        )
        await self.fails(
            ConflictError,
            directory.add_user(
                "judy2", "judy2@example.com", source="ldap", external_id="ext-1"
            ),
        )

    async def test_retired_username(self) -> None:
        """
        The username of a deleted user cannot be used again, in any case.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("mallory", "mallory@example.com")
        await directory.delete_user(user.id)
        for name in ["mallory", "Mallory"]:
            error = await self.fails(
                ConflictError, directory.add_user(name, "new@example.com")
            )
            self.assertEqual(error.field, "username")
        # The email address is free again.
        other = await directory.add_user("mallory2", "mallory@example.com")
        self.assertEqual(other.email, "mallory@example.com")

    # Finding users

    async def test_get_user_missing(self) -> None:
        """
        Getting an unknown user id fails with L{NotFoundError}.
        """
        directory = self.makeDirectory()
        await self.fails(NotFoundError, directory.get_user("uid-missing"))

    async def test_lookups_ignore_case(self) -> None:
        """
        Lookups by username, email and login ignore case and surrounding
        space.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("niaj", "niaj@example.com")
        self.assertEqual(await directory.user_by_username("NIAJ"), user)
        self.assertEqual(await directory.user_by_username(" niaj "), user)
        self.assertEqual(await directory.user_by_email("Niaj@Example.Com"), user)
        self.assertEqual(await directory.user_by_login("Niaj"), user)
        self.assertEqual(await directory.user_by_login("NIAJ@example.com"), user)

    async def test_lookups_unknown(self) -> None:
        """
        Lookups of unknown names, including invalid ones, return C{None}.
        """
        directory = self.makeDirectory()
        await directory.add_user("olivia", "olivia@example.com")
        self.assertIsNone(await directory.user_by_username("nobody"))
        self.assertIsNone(await directory.user_by_username("no body!"))
        self.assertIsNone(await directory.user_by_email("olivia@example.org"))
        self.assertIsNone(await directory.user_by_login("nobody@example.com"))
        self.assertIsNone(await directory.user_by_login("olivia@"))
        self.assertIsNone(await directory.user_by_external_id("nothing"))

    async def test_user_by_external_id(self) -> None:
        """
        A synced user is found by its external id.
        """
        directory = self.makeDirectory()
        user = await directory.add_user(
            "peggy", "peggy@example.com", source="ldap", external_id="guid-1"
        )
        self.assertEqual(await directory.user_by_external_id("guid-1"), user)

    async def test_list_users(self) -> None:
        """
        Users are listed by username, with offset and limit.
        """
        directory = self.makeDirectory()
        for name in ["victor", "alice", "mike", "bob"]:
            await directory.add_user(name, f"{name}@example.com")
        names = [user.username for user in await directory.list_users()]
        self.assertEqual(names, ["alice", "bob", "mike", "victor"])
        page = await directory.list_users(offset=1, limit=2)
        self.assertEqual([user.username for user in page], ["bob", "mike"])
        tail = await directory.list_users(offset=3)
        self.assertEqual([user.username for user in tail], ["victor"])
        self.assertEqual(await directory.list_users(limit=0), [])
        self.assertEqual(await directory.count_users(), 4)

    async def test_list_users_query(self) -> None:
        """
        A query matches a substring of username, email or display name,
        ignoring case, also outside ASCII.
        """
        directory = self.makeDirectory()
        await directory.add_user("rupert", "rupert@corp.example", display_name="Rupe")
        await directory.add_user("sybil", "sybil@home.example", display_name="Émile")
        await directory.add_user("trent", "trent@corp.example", display_name="Boss")

        async def names(query: str) -> list[str]:
            return [user.username for user in await directory.list_users(query=query)]

        self.assertEqual(await names("RUP"), ["rupert"])
        self.assertEqual(await names("CORP"), ["rupert", "trent"])
        self.assertEqual(await names("émile"), ["sybil"])
        self.assertEqual(await names("boss"), ["trent"])
        self.assertEqual(await names("zzz"), [])
        self.assertEqual(await directory.count_users(query="corp"), 2)
        self.assertEqual(await directory.count_users(query="ÉMI"), 1)

    # Changing users

    async def test_update_user(self) -> None:
        """
        Given fields change, the email is lower-cased and the modification
        time is the clock's time.
        """
        directory = self.makeDirectory()
        await self.add_admin(directory)
        user = await directory.add_user("uma", "uma@example.com")
        self.clock.advance(60)
        updated = await directory.update_user(
            user.id,
            email="Uma.New@Example.com",
            fallback_email="uma@home.example",
            display_name="Uma T",
            role="admin",
            active=False,
            email_verified=False,
        )
        self.assertEqual(updated.email, "uma.new@example.com")
        self.assertEqual(updated.fallback_email, "uma@home.example")
        self.assertEqual(updated.display_name, "Uma T")
        self.assertIs(updated.role, Role.admin)
        self.assertFalse(updated.active)
        self.assertFalse(updated.email_verified)
        self.assertEqual(updated.created_at, user.created_at)
        self.assertEqual(updated.updated_at.timestamp(), START_TIME + 60)
        self.assertEqual(await directory.get_user(user.id), updated)

    async def test_update_user_none_keeps(self) -> None:
        """
        C{None} leaves fields alone, including C{email_verified} when the
        email changes.
        """
        directory = self.makeDirectory()
        user = await directory.add_user(
            "victor", "victor@example.com", display_name="Vic"
        )
        updated = await directory.update_user(user.id, email="vic@example.com")
        self.assertEqual(updated.display_name, "Vic")
        self.assertTrue(updated.email_verified)
        self.assertIs(updated.role, Role.user)

    async def test_update_user_clear_fallback(self) -> None:
        """
        An empty fallback email clears it.
        """
        directory = self.makeDirectory()
        user = await directory.add_user(
            "walter", "walter@example.com", fallback_email="w@home.example"
        )
        updated = await directory.update_user(user.id, fallback_email="")
        self.assertIsNone(updated.fallback_email)

    async def test_update_user_external_id(self) -> None:
        """
        The external id can be set, and a taken one is a conflict.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("xena", "xena@example.com")
        other = await directory.add_user(
            "yuri", "yuri@example.com", source="ldap", external_id="ext-9"
        )
        updated = await directory.update_user(user.id, external_id="ext-8")
        self.assertEqual(updated.external_id, "ext-8")
        await self.fails(
            ConflictError, directory.update_user(user.id, external_id="ext-9")
        )
        self.assertEqual((await directory.get_user(other.id)).external_id, "ext-9")

    async def test_update_user_unchanged(self) -> None:
        """
        An update that changes nothing keeps the modification time.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("zoe", "zoe@example.com", display_name="Zoe")
        self.clock.advance(60)
        same = await directory.update_user(
            user.id, email="ZOE@example.com", display_name="Zoe"
        )
        self.assertEqual(same.updated_at, user.updated_at)

    async def test_update_user_email_conflict(self) -> None:
        """
        Changing the email to another user's is a conflict; keeping one's
        own is not.
        """
        directory = self.makeDirectory()
        await directory.add_user("amy", "amy@example.com")
        user = await directory.add_user("ben", "ben@example.com")
        error = await self.fails(
            ConflictError, directory.update_user(user.id, email="AMY@example.com")
        )
        self.assertEqual(error.field, "email")
        same = await directory.update_user(user.id, email="ben@example.com")
        self.assertEqual(same.email, "ben@example.com")

    async def test_update_user_invalid(self) -> None:
        """
        An invalid value fails the whole update: no field changes.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("cleo", "cleo@example.com")
        await self.fails(
            ValidationError,
            directory.update_user(user.id, display_name="Cleo", email="broken"),
        )
        await self.fails(ValidationError, directory.update_user(user.id, role="owner"))
        self.assertEqual(await directory.get_user(user.id), user)

    async def test_update_user_missing(self) -> None:
        """
        Updating an unknown user fails with L{NotFoundError}.
        """
        directory = self.makeDirectory()
        await self.fails(
            NotFoundError, directory.update_user("uid-missing", display_name="X")
        )

    # The last admin

    async def test_last_admin(self) -> None:
        """
        The last active admin cannot be deleted, disabled or demoted.
        """
        directory = self.makeDirectory()
        admin = await self.add_admin(directory)
        await self.fails(LastAdminError, directory.delete_user(admin.id))
        await self.fails(LastAdminError, directory.update_user(admin.id, active=False))
        await self.fails(LastAdminError, directory.update_user(admin.id, role="user"))
        self.assertEqual(await directory.get_user(admin.id), admin)

    async def test_inactive_admin_does_not_count(self) -> None:
        """
        A disabled admin does not count as another admin.
        """
        directory = self.makeDirectory()
        admin = await self.add_admin(directory)
        await directory.add_user(
            "sleeper", "sleeper@example.com", role="admin", active=False
        )
        await self.fails(LastAdminError, directory.update_user(admin.id, role="user"))

    async def test_second_admin(self) -> None:
        """
        With another active admin, an admin can be demoted, disabled and
        deleted, until one is left.
        """
        directory = self.makeDirectory()
        first = await self.add_admin(directory, "root1")
        second = await self.add_admin(directory, "root2")
        demoted = await directory.update_user(first.id, role="user")
        self.assertIs(demoted.role, Role.user)
        await self.fails(LastAdminError, directory.update_user(second.id, active=False))
        await directory.update_user(first.id, role="admin")
        disabled = await directory.update_user(second.id, active=False)
        self.assertFalse(disabled.active)
        await directory.update_user(second.id, active=True)
        await directory.delete_user(second.id)
        await self.fails(LastAdminError, directory.delete_user(first.id))

    async def test_non_admin_changes(self) -> None:
        """
        Users who are not admins can be disabled and deleted without any
        admin existing.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("dora", "dora@example.com")
        disabled = await directory.update_user(user.id, active=False)
        self.assertFalse(disabled.active)
        await directory.delete_user(user.id)
        await self.fails(NotFoundError, directory.get_user(user.id))

    # Deleting users

    async def test_delete_user(self) -> None:
        """
        Deleting a user removes it and its memberships.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("edgar", "edgar@example.com")
        group = await directory.add_group("staff")
        await directory.add_member(group.id, user.id)
        await directory.delete_user(user.id)
        await self.fails(NotFoundError, directory.get_user(user.id))
        self.assertIsNone(await directory.user_by_username("edgar"))
        self.assertEqual((await directory.get_group(group.id)).members, ())
        self.assertEqual(await directory.count_users(), 0)

    async def test_delete_user_missing(self) -> None:
        """
        Deleting an unknown user fails with L{NotFoundError}.
        """
        directory = self.makeDirectory()
        await self.fails(NotFoundError, directory.delete_user("uid-missing"))

    # Passwords

    async def test_set_password(self) -> None:
        """
        A new password replaces the old one and records the time.
        """
        directory = self.makeDirectory()
        user = await directory.add_user(
            "fiona", "fiona@example.com", password="first password"
        )
        self.clock.advance(120)
        changed = await directory.set_password(user.id, "second password")
        self.assertTrue(changed.has_password)
        assert changed.password_changed_at is not None
        self.assertEqual(changed.password_changed_at.timestamp(), START_TIME + 120)
        self.assertTrue(await directory.check_password(user.id, "second password"))
        self.assertFalse(await directory.check_password(user.id, "first password"))

    async def test_remove_password(self) -> None:
        """
        Setting the password to C{None} removes it; nothing matches then.
        """
        directory = self.makeDirectory()
        user = await directory.add_user(
            "gina", "gina@example.com", password="gina password"
        )
        removed = await directory.set_password(user.id, None)
        self.assertFalse(removed.has_password)
        self.assertFalse(await directory.check_password(user.id, "gina password"))

    async def test_set_password_invalid(self) -> None:
        """
        Passwords that break the rules are rejected and the old one stays.
        """
        directory = self.makeDirectory()
        user = await directory.add_user(
            "hank1234", "hank@example.com", password="hank password"
        )
        for password in ["", "1234567", "HANK1234", "x" * 1025]:
            error = await self.fails(
                ValidationError, directory.set_password(user.id, password)
            )
            self.assertEqual(error.field, "password")
        self.assertTrue(await directory.check_password(user.id, "hank password"))

    async def test_set_password_missing(self) -> None:
        """
        Setting the password of an unknown user fails with L{NotFoundError}.
        """
        directory = self.makeDirectory()
        await self.fails(
            NotFoundError, directory.set_password("uid-missing", "long enough")
        )

    async def test_check_password_never_matches(self) -> None:
        """
        An empty password, or a user without a password, never matches.
        """
        directory = self.makeDirectory()
        with_password = await directory.add_user(
            "iris", "iris@example.com", password="iris password"
        )
        without = await directory.add_user("jack", "jack@example.com")
        self.assertFalse(await directory.check_password(with_password.id, ""))
        self.assertFalse(await directory.check_password(without.id, ""))
        self.assertFalse(await directory.check_password(without.id, "anything"))

    async def test_check_password_missing(self) -> None:
        """
        Checking the password of an unknown user fails with
        L{NotFoundError}.
        """
        directory = self.makeDirectory()
        await self.fails(
            NotFoundError, directory.check_password("uid-missing", "password")
        )

    async def test_rehash(self) -> None:
        """
        After the hashing parameters change, a successful check stores a
        hash with the new parameters, so the next check needs no rehash.
        """
        directory = self.makeDirectory()
        user = await directory.add_user(
            "kate", "kate@example.com", password="kate password"
        )
        recorder = RecordingHasher(self.makeHasher(time_cost=2))
        directory.hasher = recorder

        self.assertFalse(await directory.check_password(user.id, "wrong password"))
        self.assertEqual(recorder.verified[-1], (False, None))
        self.assertTrue(await directory.check_password(user.id, "kate password"))
        matches, new_hash = recorder.verified[-1]
        self.assertTrue(matches)
        self.assertIsNotNone(new_hash)
        self.assertTrue(await directory.check_password(user.id, "kate password"))
        self.assertEqual(recorder.verified[-1], (True, None))

    # TOTP

    async def test_totp_enrolment(self) -> None:
        """
        A pending secret does not turn 2FA on; a valid code confirms it, and
        that code is used up.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("liam", "liam@example.com")
        secret = await directory.start_totp_enrolment(user.id)
        self.assertEqual(len(secret), 32)
        self.assertFalse((await directory.get_user(user.id)).totp_enabled)
        self.assertFalse(await directory.verify_totp(user.id, self.totp_code(secret)))

        self.assertFalse(await directory.confirm_totp_enrolment(user.id, "000000x"))
        self.assertTrue(
            await directory.confirm_totp_enrolment(user.id, self.totp_code(secret))
        )
        self.assertTrue((await directory.get_user(user.id)).totp_enabled)

        self.assertFalse(await directory.verify_totp(user.id, self.totp_code(secret)))
        self.clock.advance(30)
        self.assertTrue(await directory.verify_totp(user.id, self.totp_code(secret)))

    async def test_totp_wrong_code_enrolment(self) -> None:
        """
        A wrong code leaves 2FA off and the pending secret usable.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("mona", "mona@example.com")
        secret = await directory.start_totp_enrolment(user.id)
        wrong = self.totp_code(secret, 120)
        self.assertFalse(await directory.confirm_totp_enrolment(user.id, wrong))
        self.assertFalse((await directory.get_user(user.id)).totp_enabled)
        self.assertTrue(
            await directory.confirm_totp_enrolment(user.id, self.totp_code(secret))
        )

    async def test_totp_confirm_without_start(self) -> None:
        """
        Confirming without a pending enrolment fails.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("nora", "nora@example.com")
        self.assertFalse(await directory.confirm_totp_enrolment(user.id, "123456"))
        self.assertFalse((await directory.get_user(user.id)).totp_enabled)

    async def test_totp_pending_keeps_current(self) -> None:
        """
        A new enrolment does not replace the current secret until confirmed.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("oscar", "oscar@example.com")
        old = await directory.enable_totp(user.id)
        new = await directory.start_totp_enrolment(user.id)
        self.assertNotEqual(old, new)
        self.assertTrue(await directory.verify_totp(user.id, self.totp_code(old)))
        self.clock.advance(30)
        self.assertTrue(
            await directory.confirm_totp_enrolment(user.id, self.totp_code(new))
        )
        self.clock.advance(30)
        self.assertFalse(await directory.verify_totp(user.id, self.totp_code(old)))
        self.assertTrue(await directory.verify_totp(user.id, self.totp_code(new)))

    async def test_enable_totp(self) -> None:
        """
        Administrator provisioning turns 2FA on at once with a new secret.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("pia", "pia@example.com")
        secret = await directory.enable_totp(user.id)
        self.assertEqual(len(secret), 32)
        self.assertTrue((await directory.get_user(user.id)).totp_enabled)
        self.assertTrue(await directory.verify_totp(user.id, self.totp_code(secret)))

    async def test_totp_single_use(self) -> None:
        """
        Each code is accepted once, and after a newer step is accepted the
        older steps' codes fail.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("quinn", "quinn@example.com")
        secret = await directory.enable_totp(user.id)
        current = self.totp_code(secret)
        self.assertTrue(await directory.verify_totp(user.id, current))
        self.assertFalse(await directory.verify_totp(user.id, current))
        self.assertTrue(
            await directory.verify_totp(user.id, self.totp_code(secret, 30))
        )
        self.assertFalse(await directory.verify_totp(user.id, current))
        self.assertFalse(
            await directory.verify_totp(user.id, self.totp_code(secret, -30))
        )

    async def test_totp_tolerance(self) -> None:
        """
        Codes one step away are accepted; codes two steps away are not.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("rosa", "rosa@example.com")
        secret = await directory.enable_totp(user.id)
        self.assertFalse(
            await directory.verify_totp(user.id, self.totp_code(secret, -60))
        )
        self.assertTrue(
            await directory.verify_totp(user.id, self.totp_code(secret, -30))
        )
        self.assertFalse(
            await directory.verify_totp(user.id, self.totp_code(secret, 60))
        )
        self.assertTrue(
            await directory.verify_totp(user.id, self.totp_code(secret, 30))
        )

    async def test_totp_bad_codes(self) -> None:
        """
        Wrong codes and input that is not six digits fail.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("sam", "sam@example.com")
        secret = await directory.enable_totp(user.id)
        code = self.totp_code(secret)
        valid = {self.totp_code(secret, offset) for offset in (-30, 0, 30)}
        wrong = next(
            candidate
            for candidate in (f"{number:06d}" for number in range(1000000))
            if candidate not in valid
        )
        for bad in ["", "12345", code + "1", "abcdef", wrong]:
            self.assertFalse(await directory.verify_totp(user.id, bad), bad)
        self.assertTrue(await directory.verify_totp(user.id, code))

    async def test_totp_not_enabled(self) -> None:
        """
        A user without 2FA never passes a TOTP check.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("tina", "tina@example.com")
        self.assertFalse(await directory.verify_totp(user.id, "123456"))

    async def test_disable_totp(self) -> None:
        """
        Turning 2FA off deletes the secret, so its codes fail afterwards.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("ulf", "ulf@example.com")
        secret = await directory.enable_totp(user.id)
        disabled = await directory.disable_totp(user.id)
        self.assertFalse(disabled.totp_enabled)
        self.assertFalse(await directory.verify_totp(user.id, self.totp_code(secret)))
        # Turning it off again changes nothing.
        self.assertFalse((await directory.disable_totp(user.id)).totp_enabled)

    async def test_totp_missing_user(self) -> None:
        """
        TOTP methods fail with L{NotFoundError} for an unknown user.
        """
        directory = self.makeDirectory()
        await self.fails(NotFoundError, directory.start_totp_enrolment("uid-x"))
        await self.fails(
            NotFoundError, directory.confirm_totp_enrolment("uid-x", "123456")
        )
        await self.fails(NotFoundError, directory.enable_totp("uid-x"))
        await self.fails(NotFoundError, directory.disable_totp("uid-x"))
        await self.fails(NotFoundError, directory.verify_totp("uid-x", "123456"))

    # Groups

    async def test_add_group(self) -> None:
        """
        A new group gets a gid- id, a lower-cased name and a POSIX id from
        10000 up.
        """
        directory = self.makeDirectory()
        group = await directory.add_group("Staff")
        self.assertTrue(group.id.startswith("gid-"))
        self.assertRegex(group.id[4:], _UUID4)
        self.assertEqual(group.name, "staff")
        self.assertGreaterEqual(group.gid_number, 10000)
        self.assertIs(group.source, Source.local)
        self.assertIsNone(group.external_id)
        self.assertEqual(group.members, ())
        self.assertEqual(group.member_usernames, ())
        self.assertEqual(group.created_at.timestamp(), START_TIME)
        self.assertEqual(await directory.get_group(group.id), group)

    async def test_gid_numbers_never_reused(self) -> None:
        """
        POSIX group ids are unique and not given out again after a delete.
        """
        directory = self.makeDirectory()
        first = await directory.add_group("one")
        second = await directory.add_group("two")
        await directory.delete_group(second.id)
        third = await directory.add_group("three")
        numbers = {first.gid_number, second.gid_number, third.gid_number}
        self.assertEqual(len(numbers), 3)

    async def test_external_group(self) -> None:
        """
        An external group keeps its source and external id.
        """
        directory = self.makeDirectory()
        group = await directory.add_group("ext", source="ldap", external_id="g-1")
        self.assertIs(group.source, Source.ldap)
        self.assertEqual(group.external_id, "g-1")

    async def test_add_group_invalid(self) -> None:
        """
        Invalid group names are rejected.
        """
        directory = self.makeDirectory()
        for name in ["", "two words", "-x", "g" * 65]:
            error = await self.fails(ValidationError, directory.add_group(name))
            self.assertEqual(error.field, "name", name)

    async def test_add_group_duplicate(self) -> None:
        """
        A group name that is taken, in any case, is a conflict.
        """
        directory = self.makeDirectory()
        await directory.add_group("devs")
        error = await self.fails(ConflictError, directory.add_group("DEVS"))
        self.assertEqual(error.field, "name")

    async def test_group_lookups(self) -> None:
        """
        Groups are found by id and by name in any case; unknown ones are
        not.
        """
        directory = self.makeDirectory()
        group = await directory.add_group("ops")
        self.assertEqual(await directory.group_by_name("OPS"), group)
        self.assertIsNone(await directory.group_by_name("nope"))
        await self.fails(NotFoundError, directory.get_group("gid-missing"))

    async def test_list_groups(self) -> None:
        """
        Groups are listed by name, with their members.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("vera", "vera@example.com")
        beta = await directory.add_group("beta")
        await directory.add_group("alpha")
        await directory.add_member(beta.id, user.id)
        groups = await directory.list_groups()
        self.assertEqual([group.name for group in groups], ["alpha", "beta"])
        self.assertEqual(groups[1].members, (user.id,))
        self.assertEqual(groups[1].member_usernames, ("vera",))

    async def test_rename_group(self) -> None:
        """
        Renaming keeps the id and POSIX id and frees the old name.
        """
        directory = self.makeDirectory()
        group = await directory.add_group("old-name")
        self.clock.advance(5)
        renamed = await directory.rename_group(group.id, "New-Name")
        self.assertEqual(renamed.name, "new-name")
        self.assertEqual(renamed.id, group.id)
        self.assertEqual(renamed.gid_number, group.gid_number)
        self.assertEqual(renamed.updated_at.timestamp(), START_TIME + 5)
        self.assertIsNone(await directory.group_by_name("old-name"))
        self.assertEqual(await directory.group_by_name("new-name"), renamed)
        await directory.add_group("old-name")

    async def test_rename_group_errors(self) -> None:
        """
        Renaming to a taken or invalid name, or an unknown group, fails.
        """
        directory = self.makeDirectory()
        group = await directory.add_group("first")
        await directory.add_group("second")
        error = await self.fails(
            ConflictError, directory.rename_group(group.id, "SECOND")
        )
        self.assertEqual(error.field, "name")
        await self.fails(ValidationError, directory.rename_group(group.id, "a b"))
        await self.fails(NotFoundError, directory.rename_group("gid-x", "third"))
        self.assertEqual((await directory.get_group(group.id)).name, "first")

    async def test_rename_group_same_name(self) -> None:
        """
        Renaming a group to its own name changes nothing.
        """
        directory = self.makeDirectory()
        group = await directory.add_group("same")
        self.assertEqual(await directory.rename_group(group.id, "Same"), group)

    async def test_rename_external_group(self) -> None:
        """
        An external group cannot be renamed.
        """
        directory = self.makeDirectory()
        group = await directory.add_group("synced", source="ldap", external_id="g-2")
        await self.fails(ReadOnlyError, directory.rename_group(group.id, "mine"))
        self.assertEqual((await directory.get_group(group.id)).name, "synced")

    async def test_memberships(self) -> None:
        """
        Members are added and removed once, and show on both sides.
        """
        directory = self.makeDirectory()
        wade = await directory.add_user("wade", "wade@example.com")
        abe = await directory.add_user("abe", "abe@example.com")
        zeta = await directory.add_group("zeta")
        alpha = await directory.add_group("alpha")

        await directory.add_member(zeta.id, wade.id)
        await directory.add_member(alpha.id, wade.id)
        group = await directory.add_member(zeta.id, abe.id)
        self.assertEqual(group.members, tuple(sorted([wade.id, abe.id])))
        self.assertEqual(group.member_usernames, ("abe", "wade"))
        again = await directory.add_member(zeta.id, abe.id)
        self.assertEqual(again.members, group.members)

        self.assertEqual((await directory.get_user(wade.id)).groups, ("alpha", "zeta"))
        names = [group.name for group in await directory.groups_of(wade.id)]
        self.assertEqual(names, ["alpha", "zeta"])

        removed = await directory.remove_member(zeta.id, wade.id)
        self.assertEqual(removed.members, (abe.id,))
        again = await directory.remove_member(zeta.id, wade.id)
        self.assertEqual(again.members, (abe.id,))
        self.assertEqual((await directory.get_user(wade.id)).groups, ("alpha",))
        self.assertEqual(await directory.groups_of(abe.id), [removed])

    async def test_membership_errors(self) -> None:
        """
        Unknown groups and users fail with L{NotFoundError}.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("xavier", "xavier@example.com")
        group = await directory.add_group("crew")
        await self.fails(NotFoundError, directory.add_member("gid-x", user.id))
        await self.fails(NotFoundError, directory.add_member(group.id, "uid-x"))
        await self.fails(NotFoundError, directory.remove_member("gid-x", user.id))
        await self.fails(NotFoundError, directory.groups_of("uid-x"))
        self.assertEqual(await directory.groups_of(user.id), [])

    async def test_external_group_members(self) -> None:
        """
        The members of an external group cannot be changed.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("yara", "yara@example.com")
        group = await directory.add_group("synced", source="ldap", external_id="g-3")
        await self.fails(ReadOnlyError, directory.add_member(group.id, user.id))
        await self.fails(ReadOnlyError, directory.remove_member(group.id, user.id))

    async def test_local_group_external_user(self) -> None:
        """
        A local group can hold local and external users.
        """
        directory = self.makeDirectory()
        local = await directory.add_user("zack", "zack@example.com")
        external = await directory.add_user(
            "zed", "zed@example.com", source="ldap", external_id="u-1"
        )
        group = await directory.add_group("mixed")
        await directory.add_member(group.id, local.id)
        group = await directory.add_member(group.id, external.id)
        self.assertEqual(group.member_usernames, ("zack", "zed"))

    async def test_delete_group(self) -> None:
        """
        Deleting a group removes it and its memberships; the name is free
        again.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("adam", "adam@example.com")
        group = await directory.add_group("temp")
        await directory.add_member(group.id, user.id)
        await directory.delete_group(group.id)
        await self.fails(NotFoundError, directory.get_group(group.id))
        self.assertEqual((await directory.get_user(user.id)).groups, ())
        self.assertEqual(await directory.list_groups(), [])
        await directory.add_group("temp")
        await self.fails(NotFoundError, directory.delete_group(group.id))

    # Settings

    async def test_settings_defaults(self) -> None:
        """
        Settings never set have their defaults.
        """
        directory = self.makeDirectory()
        self.assertEqual(await directory.get_settings(), SETTINGS_DEFAULTS)

    async def test_set_setting(self) -> None:
        """
        Known settings are parsed and stored; the result has every setting.
        """
        directory = self.makeDirectory()
        settings = await directory.set_setting("name", "  Example   Org ")
        self.assertEqual(settings["name"], "Example Org")
        settings = await directory.set_setting("lock_profile", "TRUE")
        self.assertIs(settings["lock_profile"], True)
        settings = await directory.set_setting("mandatory_2fa", True)
        self.assertIs(settings["mandatory_2fa"], True)
        settings = await directory.set_setting("lock_profile", False)
        self.assertIs(settings["lock_profile"], False)
        self.assertEqual(await directory.get_settings(), settings)
        self.assertEqual(set(settings), set(SETTINGS_DEFAULTS))

    async def test_set_setting_invalid(self) -> None:
        """
        Unknown keys and values of the wrong type are rejected and nothing
        is stored.
        """
        directory = self.makeDirectory()
        cases: list[tuple[str, Any]] = [
            ("colour", "blue"),
            ("lock_profile", "yes"),
            ("lock_profile", 1),
            ("name", ""),
            ("name", None),
            ("ldap_server", "x"),
            ("external.", "x"),
        ]
        for key, value in cases:
            error = await self.fails(ValidationError, directory.set_setting(key, value))
            self.assertIsInstance(error, DirectoryError)
        self.assertEqual(await directory.get_settings(), SETTINGS_DEFAULTS)

    async def test_feature_settings(self) -> None:
        """
        Keys under ldap_server. and external. store any JSON value.
        """
        directory = self.makeDirectory()
        value = {"enabled": True, "allowlist": ["10.0.0.0/8"], "port": 389}
        settings = await directory.set_setting("ldap_server.config", value)
        self.assertEqual(settings["ldap_server.config"], value)
        settings = await directory.set_setting("external.provider", "ad")
        self.assertEqual(settings["external.provider"], "ad")
        settings = await directory.set_setting("external.provider", None)
        self.assertIsNone(settings["external.provider"])
        await self.fails(ValidationError, directory.set_setting("external.x", object()))

    # Revision

    async def test_revision_changes(self) -> None:
        """
        The revision changes with every change of users, groups, memberships
        and settings.
        """
        directory = self.makeDirectory()
        seen = [directory.revision()]

        def changed() -> bool:
            current = directory.revision()
            new = current not in seen
            seen.append(current)
            return new

        user = await directory.add_user("bea", "bea@example.com")
        self.assertTrue(changed())
        await directory.update_user(user.id, display_name="Bea")
        self.assertTrue(changed())
        group = await directory.add_group("team")
        self.assertTrue(changed())
        await directory.add_member(group.id, user.id)
        self.assertTrue(changed())
        await directory.rename_group(group.id, "squad")
        self.assertTrue(changed())
        await directory.remove_member(group.id, user.id)
        self.assertTrue(changed())
        await directory.set_setting("lock_profile", True)
        self.assertTrue(changed())
        await directory.set_password(user.id, "bea password")
        self.assertTrue(changed())
        await directory.enable_totp(user.id)
        self.assertTrue(changed())
        await directory.delete_group(group.id)
        self.assertTrue(changed())
        await directory.delete_user(user.id)
        self.assertTrue(changed())

    async def test_revision_stable_on_reads(self) -> None:
        """
        Reads leave the revision alone.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("cal", "cal@example.com")
        before = directory.revision()
        await directory.get_user(user.id)
        await directory.list_users()
        await directory.list_groups()
        await directory.get_settings()
        self.assertEqual(directory.revision(), before)


class AuditLogContractMixin(ContractBase):
    """
    Tests of the L{IAuditLog} contract.

    Hook: C{makeAuditLog()} returns a new, empty audit log that reads the
    time from C{self.clock}.
    """

    def makeAuditLog(self) -> IAuditLog:
        raise NotImplementedError()

    def test_audit_interface(self) -> None:
        """
        The audit log provides L{IAuditLog}.
        """
        self.assertTrue(verifyObject(IAuditLog, self.makeAuditLog()))

    async def test_record(self) -> None:
        """
        A recorded event comes back with every field and the clock's time.
        """
        log = self.makeAuditLog()
        await log.record(
            "login.failed",
            "failure",
            entry_point="ldap",
            actor="alice",
            subject="alice",
            address="192.0.2.1",
            detail="wrong password",
        )
        (event,) = await log.events()
        self.assertEqual(event.kind, "login.failed")
        self.assertEqual(event.outcome, "failure")
        self.assertEqual(event.entry_point, "ldap")
        self.assertEqual(event.actor, "alice")
        self.assertEqual(event.subject, "alice")
        self.assertEqual(event.address, "192.0.2.1")
        self.assertEqual(event.detail, "wrong password")
        self.assertEqual(event.time.timestamp(), START_TIME)

    async def test_record_defaults(self) -> None:
        """
        Optional fields default to C{None} and an empty detail.
        """
        log = self.makeAuditLog()
        await log.record("sync", "success", entry_point="cli")
        (event,) = await log.events()
        self.assertIsNone(event.actor)
        self.assertIsNone(event.subject)
        self.assertIsNone(event.address)
        self.assertEqual(event.detail, "")

    async def test_events_order_and_paging(self) -> None:
        """
        Events come newest first, with offset and limit.
        """
        log = self.makeAuditLog()
        for number in range(5):
            await log.record(f"kind.{number}", "success", entry_point="web")
            self.clock.advance(1)
        kinds = [event.kind for event in await log.events()]
        self.assertEqual(kinds, [f"kind.{n}" for n in (4, 3, 2, 1, 0)])
        page = await log.events(offset=1, limit=2)
        self.assertEqual([event.kind for event in page], ["kind.3", "kind.2"])

    async def test_events_filters(self) -> None:
        """
        Events filter by actor or subject, and by kind prefix.
        """
        log = self.makeAuditLog()
        await log.record("login", "success", entry_point="web", actor="amy")
        await log.record("user.add", "success", entry_point="cli", subject="amy")
        await log.record("user.delete", "success", entry_point="cli", actor="bob")
        await log.record("username.x", "success", entry_point="cli", actor="bob")

        by_amy = await log.events(user="amy")
        self.assertEqual([event.kind for event in by_amy], ["user.add", "login"])
        users = await log.events(kind="user.")
        self.assertEqual([event.kind for event in users], ["user.delete", "user.add"])
        both = await log.events(user="bob", kind="user")
        self.assertEqual([event.kind for event in both], ["username.x", "user.delete"])
        self.assertEqual(await log.events(user="nobody"), [])


class RateLimitStoreContractMixin(ContractBase):
    """
    Tests of the L{IRateLimitStore} contract.

    Hook: C{makeRateLimitStore()} returns a new, empty store that reads the
    time from C{self.clock}.
    """

    def makeRateLimitStore(self) -> IRateLimitStore:
        raise NotImplementedError()

    def test_rate_limit_interface(self) -> None:
        """
        The store provides L{IRateLimitStore}.
        """
        self.assertTrue(verifyObject(IRateLimitStore, self.makeRateLimitStore()))

    async def test_count(self) -> None:
        """
        Each failure adds one to the count of its key only.
        """
        store = self.makeRateLimitStore()
        self.assertEqual(await store.failures("user:a", 60), 0)
        self.assertEqual(await store.add_failure("user:a", 60), 1)
        self.assertEqual(await store.add_failure("user:a", 60), 2)
        self.assertEqual(await store.add_failure("addr:192.0.2.1", 60), 1)
        self.assertEqual(await store.failures("user:a", 60), 2)
        self.assertEqual(await store.failures("user:b", 60), 0)

    async def test_window(self) -> None:
        """
        Failures older than the window no longer count.
        """
        store = self.makeRateLimitStore()
        await store.add_failure("user:a", 60)
        self.clock.advance(40)
        self.assertEqual(await store.add_failure("user:a", 60), 2)
        self.clock.advance(30)
        self.assertEqual(await store.failures("user:a", 60), 1)
        self.assertEqual(await store.add_failure("user:a", 60), 2)
        self.clock.advance(61)
        self.assertEqual(await store.failures("user:a", 60), 0)

    async def test_reset(self) -> None:
        """
        A reset deletes the failures of one key only.
        """
        store = self.makeRateLimitStore()
        await store.add_failure("user:a", 60)
        await store.add_failure("user:b", 60)
        await store.reset("user:a")
        self.assertEqual(await store.failures("user:a", 60), 0)
        self.assertEqual(await store.failures("user:b", 60), 1)
        await store.reset("user:unknown")
