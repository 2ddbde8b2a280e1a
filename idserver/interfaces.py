"""
The interfaces that the directory backends, the stores and the protocol
faces (LDAP, OpenID Connect, dashboard, command line) meet at.

Every method that touches storage returns a L{Deferred}; the backends run
blocking work (SQLite, argon2) in threads, never on the reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from idserver.model import AuditEvent, Group, User

__all__ = [
    "IAuditLog",
    "IDirectory",
    "IPasswordHasher",
    "IRateLimitStore",
]


class IPasswordHasher(Interface):
    """
    Hashes and verifies user-chosen secrets with argon2id in a bounded
    thread pool.
    """

    def hash(secret: str) -> Deferred[str]:
        """
        Hash C{secret} in a worker thread.

        @return: a L{Deferred} that fires with the encoded argon2id hash, or
            fails with L{idserver.errors.HasherBusyError} at once when the
            queue is full.
        """

    def verify(encoded: str, secret: str) -> Deferred[tuple[bool, str | None]]:
        """
        Check C{secret} against C{encoded} in a worker thread.

        @return: a L{Deferred} firing with C{(matches, new_hash)}, where
            C{new_hash} is a fresh hash of C{secret} when it matches and the
            stored hash used older parameters, else C{None}. Fails with
            L{idserver.errors.HasherBusyError} when the queue is full.
        """


class IAuditLog(Interface):
    """
    The audit log: logins, failed logins, 2FA changes, admin changes, syncs.
    """

    def record(
        kind: str,
        outcome: str,
        *,
        entry_point: str,
        actor: str | None = None,
        subject: str | None = None,
        address: str | None = None,
        detail: str = "",
    ) -> Deferred[None]:
        """
        Append one event. C{detail} must never contain a secret.
        """

    def events(
        *,
        user: str | None = None,
        kind: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> Deferred[list[AuditEvent]]:
        """
        Return events, newest first, optionally only those whose actor or
        subject is C{user} and whose kind starts with C{kind}.
        """


class IDirectory(Interface):
    """
    Users, groups, memberships and settings.

    Lookups by username and email are case-insensitive. Usernames never
    change and are never reused, even after the user is deleted. Methods
    raise the errors of L{idserver.errors} (through the L{Deferred}) on bad
    input; a failed call changes nothing.
    """

    hasher = Attribute("The L{IPasswordHasher} used for passwords.")

    def revision() -> int:
        """
        Return a number that changes whenever users, groups, memberships or
        settings change, from this process or another one writing the same
        store. Cheap and non-blocking, so a cache can call it per request.
        """

    # Users

    def add_user(
        username: str,
        email: str,
        *,
        display_name: str = "",
        fallback_email: str | None = None,
        role: str = "user",
        password: str | None = None,
        active: bool = True,
        source: str = "local",
        external_id: str | None = None,
    ) -> Deferred[User]:
        """
        Create a user. Names and addresses are validated and lower-cased.

        @raise ValidationError: a value breaks the rules of
            L{idserver.validation}.
        @raise ConflictError: the username (also a retired one) or the email
            is taken.
        """

    def get_user(user_id: str) -> Deferred[User]:
        """
        @raise NotFoundError: there is no user with this id.
        """

    def user_by_username(username: str) -> Deferred[User | None]:
        """
        Find a user by username, ignoring case.
        """

    def user_by_email(email: str) -> Deferred[User | None]:
        """
        Find a user by email address, ignoring case.
        """

    def user_by_login(name: str) -> Deferred[User | None]:
        """
        Find a user by what was typed into a login form: a username, or an
        email address when C{name} contains C{@}.
        """

    def user_by_external_id(external_id: str) -> Deferred[User | None]:
        """
        Find a synced user by its stable id in the external directory.
        """

    def list_users(
        *, query: str | None = None, offset: int = 0, limit: int | None = None
    ) -> Deferred[list[User]]:
        """
        Return users ordered by username. C{query} matches a substring of the
        username, email or display name, ignoring case.
        """

    def count_users(*, query: str | None = None) -> Deferred[int]:
        """
        Return how many users L{list_users} would return without paging.
        """

    def update_user(
        user_id: str,
        *,
        email: str | None = None,
        fallback_email: str | None = None,
        display_name: str | None = None,
        role: str | None = None,
        active: bool | None = None,
        email_verified: bool | None = None,
        external_id: str | None = None,
    ) -> Deferred[User]:
        """
        Change the given fields; C{None} leaves a field alone, and an empty
        C{fallback_email} clears it.

        @raise LastAdminError: the change would leave no active admin.
        """

    def delete_user(user_id: str) -> Deferred[None]:
        """
        Delete a user and its memberships. The username stays retired.

        @raise LastAdminError: the user is the last active admin.
        """

    def set_password(user_id: str, password: str | None) -> Deferred[User]:
        """
        Validate and hash C{password} (off the reactor) and store it, or
        remove the password when C{password} is C{None}. Records the time of
        the change.
        """

    def check_password(user_id: str, password: str) -> Deferred[bool]:
        """
        Verify a password without touching rate limits or 2FA. An empty
        password or a user without a password never matches. A stored hash
        with outdated parameters is replaced after a successful check.
        """

    # TOTP

    def start_totp_enrolment(user_id: str) -> Deferred[str]:
        """
        Store a new pending TOTP secret, leaving 2FA as it is, and return
        the base32 secret.
        """

    def confirm_totp_enrolment(user_id: str, code: str) -> Deferred[bool]:
        """
        Turn 2FA on with the pending secret if C{code} is valid for it.
        The accepted time step is stored, so the same code fails later.
        """

    def enable_totp(user_id: str) -> Deferred[str]:
        """
        Generate a secret and turn 2FA on at once (administrator
        provisioning). Return the base32 secret.
        """

    def disable_totp(user_id: str) -> Deferred[User]:
        """
        Turn 2FA off and forget the secret.
        """

    def verify_totp(user_id: str, code: str) -> Deferred[bool]:
        """
        Check a TOTP code with a tolerance of one time step. A code whose
        step is not newer than the last accepted one fails, so each code is
        accepted once; the check and the update are one transaction.
        """

    # Groups

    def add_group(
        name: str, *, source: str = "local", external_id: str | None = None
    ) -> Deferred[Group]:
        """
        @raise ConflictError: the name is taken.
        """

    def get_group(group_id: str) -> Deferred[Group]:
        """
        @raise NotFoundError: there is no group with this id.
        """

    def group_by_name(name: str) -> Deferred[Group | None]:
        """
        Find a group by name, ignoring case.
        """

    def list_groups() -> Deferred[list[Group]]:
        """
        Return every group ordered by name, with members.
        """

    def rename_group(group_id: str, new_name: str) -> Deferred[Group]:
        """
        @raise ReadOnlyError: the group is external.
        @raise ConflictError: the new name is taken.
        """

    def delete_group(group_id: str) -> Deferred[None]:
        """
        Delete a group and its memberships.
        """

    def add_member(group_id: str, user_id: str) -> Deferred[Group]:
        """
        Add a user to a group; adding an existing member changes nothing.
        """

    def remove_member(group_id: str, user_id: str) -> Deferred[Group]:
        """
        Remove a user from a group; removing a non-member changes nothing.
        """

    def groups_of(user_id: str) -> Deferred[list[Group]]:
        """
        Return the groups the user is a member of, ordered by name.
        """

    # Settings

    def get_settings() -> Deferred[dict[str, Any]]:
        """
        Return every setting, with defaults for those never set.
        """

    def set_setting(key: str, value: Any) -> Deferred[dict[str, Any]]:
        """
        Store one setting after validating it, and return all settings.

        Known keys are validated with L{idserver.validation.parse_setting};
        keys starting with C{ldap_server.} or C{external.} store JSON values
        for the features that own them.
        """


class IRateLimitStore(Interface):
    """
    Counters of failed password checks, shared by every entry point (LDAP
    binds, web login, token endpoint).
    """

    def add_failure(key: str, window: float) -> Deferred[int]:
        """
        Count one failure for C{key} and return the number of failures within
        the last C{window} seconds, this one included.
        """

    def failures(key: str, window: float) -> Deferred[int]:
        """
        Return the number of failures for C{key} within the last C{window}
        seconds.
        """

    def reset(key: str) -> Deferred[None]:
        """
        Forget the failures of C{key} (after a successful login).
        """
