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
from idserver.oidc.model import Client
from idserver.sessions.model import (
    AccessToken,
    AuthorizationCode,
    BrowserSession,
    Grant,
    RefreshToken,
)

__all__ = [
    "IAuditLog",
    "IClientRegistry",
    "IDirectory",
    "IPasswordHasher",
    "IRateLimitStore",
    "ISessionStore",
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
        accepted once. The check and the update are one transaction.
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


class ISessionStore(IRateLimitStore):
    """
    Browser sessions, authorization codes, grants (app sessions), refresh
    and access tokens, and the rate-limit counters of L{IRateLimitStore}.

    Records are keyed by the SHA-256 of their secret (see
    L{idserver.sessions.model.secret_key}); the secrets themselves are
    never stored. Expired records may disappear at any time; callers still
    check C{expires_at}, because a store purges only now and then.
    """

    # Browser sessions

    def add_session(session: BrowserSession) -> Deferred[None]:
        """
        Store a new browser session.
        """

    def get_session(key: str) -> Deferred[BrowserSession | None]:
        """
        Return the session stored under C{key}, or C{None}.
        """

    def touch_session(key: str, last_seen: float) -> Deferred[None]:
        """
        Record a request made with the session.
        """

    def delete_session(key: str) -> Deferred[None]:
        """
        End a browser session. Grants created by it stay.
        """

    def delete_session_by_sid(user_id: str, sid: str) -> Deferred[bool]:
        """
        End the session of C{user_id} whose public id is C{sid}; return
        whether there was one.
        """

    def sessions_of(user_id: str) -> Deferred[list[BrowserSession]]:
        """
        Return the sessions of a user, newest first.
        """

    # Authorization codes

    def add_code(code: AuthorizationCode) -> Deferred[None]:
        """
        Store a new authorization code.
        """

    def redeem_code(
        key: str, grant_id: str, now: float
    ) -> Deferred[AuthorizationCode | None]:
        """
        Mark the code stored under C{key} as used by C{grant_id}, in one
        atomic step, and return it as it was before: a record whose
        C{used_at} is set was redeemed earlier (a replay), and its
        C{grant_id} names the grant that earlier exchange created. Return
        C{None} for an unknown code.
        """

    # Grants and tokens

    def add_grant(grant: Grant) -> Deferred[None]:
        """
        Store a new grant.
        """

    def get_grant(grant_id: str) -> Deferred[Grant | None]:
        """
        Return a grant, or C{None} when it is unknown or revoked.
        """

    def grants_of(user_id: str) -> Deferred[list[Grant]]:
        """
        Return the grants of a user, newest first.
        """

    def revoke_grant(grant_id: str) -> Deferred[None]:
        """
        Delete a grant with all its refresh and access tokens.
        """

    def add_refresh_token(token: RefreshToken, now: float) -> Deferred[None]:
        """
        Store a refresh token and record C{now} as the last use of its
        grant. A token of a grant that does not exist (revoked while the
        token was being issued) is not stored.

        A grant has one current refresh token: in the same atomic step,
        the grant's other tokens that are not rotated yet are marked as
        rotated at C{now}, as if they had been used.
        """

    def get_refresh_token(key: str) -> Deferred[RefreshToken | None]:
        """
        Return a refresh token, rotated ones included, or C{None}.
        """

    def rotate_refresh_token(key: str, now: float) -> Deferred[bool]:
        """
        Mark the refresh token stored under C{key} as replaced at C{now}.
        Return C{False}, changing nothing, when it was already rotated, so
        of two concurrent refreshes with one token exactly one wins.
        """

    def add_access_token(token: AccessToken) -> Deferred[None]:
        """
        Store an access token, unless its grant does not exist (revoked
        while the token was being issued).
        """

    def get_access_token(key: str) -> Deferred[AccessToken | None]:
        """
        Return an access token, or C{None}.
        """

    def delete_access_token(key: str) -> Deferred[None]:
        """
        Revoke one access token.
        """

    # Whole users and housekeeping

    def user_ids() -> Deferred[set[str]]:
        """
        Return the ids of users who have a session or a grant.
        """

    def end_user_sessions(user_id: str) -> Deferred[int]:
        """
        End every browser session and revoke every grant of a user. Return
        how many sessions and grants there were.
        """

    def purge_expired(now: float) -> Deferred[int]:
        """
        Delete sessions, codes and tokens that expired before C{now}, and
        grants left without a refresh token. Return how many records went.
        """


class IClientRegistry(Interface):
    """
    The registered OpenID Connect clients (relying parties).
    """

    def add_client(
        name: str,
        redirect_uris: list[str],
        *,
        post_logout_redirect_uris: list[str] | None = None,
        launch_url: str | None = None,
        signing_alg: str = "RS256",
        public: bool = False,
        allowed_group_ids: list[str] | None = None,
    ) -> Deferred[tuple[Client, str | None]]:
        """
        Register a client with a generated id and, unless C{public}, a
        generated secret.

        @return: the client and its secret in clear (C{None} for a public
            client); the secret cannot be read back later.
        @raise ValidationError: a name, URI or algorithm is invalid.
        """

    def get_client(client_id: str) -> Deferred[Client | None]:
        """
        Return a client, or C{None} when the id is unknown.
        """

    def list_clients() -> Deferred[list[Client]]:
        """
        Return every client, ordered by name.
        """

    def update_client(
        client_id: str,
        *,
        name: str | None = None,
        redirect_uris: list[str] | None = None,
        post_logout_redirect_uris: list[str] | None = None,
        launch_url: str | None = None,
        signing_alg: str | None = None,
        public: bool | None = None,
        allowed_group_ids: list[str] | None = None,
        new_secret: bool = False,
    ) -> Deferred[tuple[Client, str | None]]:
        """
        Change the given fields; C{None} leaves a field alone and an empty
        C{launch_url} clears it. A confidential client gets a new secret
        when C{new_secret} is set or when it stops being public.

        @return: the client and its new secret, if one was generated.
        @raise NotFoundError: the client does not exist.
        """

    def delete_client(client_id: str) -> Deferred[None]:
        """
        Delete a client.

        @raise NotFoundError: the client does not exist.
        """
