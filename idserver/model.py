"""
Value objects for the directory: users, groups and audit events.

These are immutable snapshots. Backends return new objects after a change.
None of them contains a password hash or a TOTP secret.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "AuditEvent",
    "Group",
    "Role",
    "Source",
    "User",
]


class Role(str, enum.Enum):
    """
    The role of a user: administrators manage the directory.
    """

    admin = "admin"
    user = "user"


class Source(str, enum.Enum):
    """
    The origin of a user or group: local, or synced from an LDAP server.
    """

    local = "local"
    ldap = "ldap"


@dataclass(frozen=True)
class User:
    """
    A user of the directory.

    @ivar id: C{uid-} followed by a UUID4; never changes.
    @ivar username: lower case; never changes and is never reused.
    @ivar email: lower case and unique.
    @ivar email_verified: C{True} when an administrator or the external
        directory set the address, C{False} after the user changed it.
    @ivar has_password: whether a local password hash is stored.
    @ivar uid_number: the POSIX user id, allocated from 10000 up.
    @ivar groups: names of the groups the user is a member of, sorted.
    """

    id: str
    username: str
    email: str
    fallback_email: str | None
    display_name: str
    role: Role
    active: bool
    source: Source
    external_id: str | None
    totp_enabled: bool
    email_verified: bool
    has_password: bool
    uid_number: int
    created_at: datetime
    updated_at: datetime
    password_changed_at: datetime | None
    groups: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin


@dataclass(frozen=True)
class Group:
    """
    A group of users.

    @ivar id: C{gid-} followed by a UUID4; never changes.
    @ivar gid_number: the POSIX group id, allocated from 10000 up.
    @ivar members: ids of the member users, sorted.
    @ivar member_usernames: usernames of the member users, sorted.
    """

    id: str
    name: str
    gid_number: int
    source: Source
    external_id: str | None
    created_at: datetime
    updated_at: datetime
    members: tuple[str, ...] = ()
    member_usernames: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class AuditEvent:
    """
    One entry of the audit log.

    @ivar kind: a dotted event name such as C{login.failed} or C{user.add}.
    @ivar outcome: C{success} or C{failure}.
    @ivar actor: the username that acted, if any.
    @ivar subject: the username, group name or client the event is about.
    @ivar address: the client address, if the event came over the network.
    @ivar entry_point: C{cli}, C{ldap}, C{web} or C{oidc}.
    @ivar detail: a short human-readable explanation; never a secret.
    """

    id: int
    time: datetime
    kind: str
    outcome: str
    actor: str | None
    subject: str | None
    address: str | None
    entry_point: str
    detail: str
