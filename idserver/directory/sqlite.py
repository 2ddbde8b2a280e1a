"""
The directory, audit log and rate-limit counters in one SQLite database.

L{open_directory} opens (and creates, with mode 0600) the database file,
applies pending schema migrations and returns a L{SQLiteDirectory}, which
provides L{IDirectory}, L{IAuditLog} and L{IRateLimitStore}.

Threads: every SQL statement runs on one connection in a thread pool of
one thread that the L{Database} owns, never on the reactor thread. The one
exception is L{SQLiteDirectory.revision}, described below. Password hashes
are computed by the L{IPasswordHasher} in its own pool.

Other processes: the daemon and C{idserver-admin} may open the same file
at the same time. The database is in write-ahead-log mode, so readers do not
wait for a writer (except in rare cases such as log recovery after a crash,
when SQLite reports the database busy). Every write is one
C{BEGIN IMMEDIATE} transaction that takes the write lock before reading what
it checks (uniqueness, the last admin, the last TOTP step), so two processes
cannot both pass a check and then both write. A writer waits up to five
seconds for the lock.

Revision: the C{revision} row of the C{counters} table grows by one in
every transaction that changes users, groups, memberships or settings, but
not with audit events, rate-limit counters or TOTP steps, which change on
every login. L{SQLiteDirectory.revision} reads it through a second,
read-only connection on the calling thread, and only when
C{PRAGMA data_version} on that connection reports a commit by any other
connection since its last read. Both are reads of the write-ahead log, which
go on while another connection writes; that connection's busy timeout is
zero, so a call never waits and costs a few microseconds (about 4 µs each
on the 2-core test machine).

Read-only external objects: users and groups with source C{ldap} come from
the external directory. Only the sync code may rename external groups or
change their members: L{SQLiteDirectory.rename_group},
L{SQLiteDirectory.add_member} and L{SQLiteDirectory.remove_member} raise
L{ReadOnlyError} for them unless called with C{sync=True}.
L{SQLiteDirectory.update_user} does not check the source, because the sync
code writes the email and display name of external users through it. The
dashboard and the command line must reject changes to the email and
display name of a user whose C{source} is C{ldap} before calling it.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from idserver import totp
from idserver.directory.schema import apply_migrations
from idserver.errors import (
    ConflictError,
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
from idserver.model import AuditEvent, Group, Role, Source, User
from idserver.validation import (
    SETTINGS_DEFAULTS,
    normalize_email,
    normalize_group_name,
    normalize_username,
    parse_setting,
    validate_display_name,
    validate_password,
)

__all__ = [
    "Database",
    "SQLiteDirectory",
    "bump_revision",
    "open_directory",
]

_T = TypeVar("_T")
_P = ParamSpec("_P")

BUSY_TIMEOUT_MS = 5000

# Rate-limit rows older than this are deleted whatever their key, so keys
# that are never used again (an attacker's addresses) do not pile up.
# NOTE: a window longer than this is cut to this length for keys other
# than the one being counted.
RATE_LIMIT_RETENTION = 86400.0

# Settings owned by the LDAP server and external directory features, which
# validate them themselves; any JSON value is stored.
_FREE_SETTING = re.compile(r"(ldap_server|external)\.[A-Za-z0-9_.-]{1,100}")


def open_directory(
    path: str,
    *,
    reactor: IReactorFromThreads,
    hasher: IPasswordHasher,
    clock: IReactorTime | None = None,
) -> SQLiteDirectory:
    """
    Open the SQLite database at C{path}, creating it with mode 0600 and
    applying pending schema migrations, and return the directory on it.

    This blocks while it migrates (waiting up to five seconds per migration
    for another process that holds the lock), so call it at start-up. Call
    L{SQLiteDirectory.close} when done.

    @param reactor: the reactor that receives results from the database
        thread; also the clock unless C{clock} is given.
    @param hasher: hashes and verifies passwords.
    @param clock: the source of the current time for timestamps, TOTP
        checks and rate-limit windows.
    @raise OSError: the file cannot be created or opened.
    @raise sqlite3.Error: the file is not a usable SQLite database.
    @raise idserver.directory.schema.SchemaError: a migration failed or the
        database was migrated by a newer version.
    """
    database = Database.open(path, reactor=reactor, clock=clock)
    return SQLiteDirectory(database, hasher)


def bump_revision(connection: sqlite3.Connection) -> None:
    """
    Count a change of users, groups, memberships or settings. Call it inside
    the write transaction that makes the change.
    """
    connection.execute("UPDATE counters SET value = value + 1 WHERE name = 'revision'")


class Database:
    """
    A SQLite database file with one connection in a single-thread pool.

    Other SQLite-backed stores of the same file (such as sessions) can share
    it through L{read} and L{write}, so all writes of a process go through
    one thread.

    @ivar path: the database file.
    @ivar clock: the source of the current time.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        connection: sqlite3.Connection,
        watcher: sqlite3.Connection,
        *,
        reactor: IReactorFromThreads,
        clock: IReactorTime,
    ) -> None:
        self.path = path
        self.clock = clock
        self._connection = connection
        self._watcher = watcher
        self._reactor = reactor
        self._identity = _file_identity(path)
        self._data_version: int | None = None
        self._revision = 0
        self._closed = False
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="sqlite")
        self._pool.start()

    @classmethod
    def open(
        cls,
        path: str,
        *,
        reactor: IReactorFromThreads,
        clock: IReactorTime | None = None,
    ) -> Database:
        """
        Create the file if needed, apply pending migrations and start the
        database thread. See L{open_directory}.
        """
        _create_private_file(path)
        connection = _connect(path, BUSY_TIMEOUT_MS)
        try:
            _prepare(connection, path)
            watcher = _connect(path, 0)
            watcher.execute("PRAGMA query_only = ON")
        except BaseException:
            connection.close()
            raise
        if clock is None:
            clock = cast(IReactorTime, reactor)
        cls.log.info("Opened the database {path}", path=path)
        return cls(path, connection, watcher, reactor=reactor, clock=clock)

    def close(self) -> None:
        """
        Wait for the statement in progress, stop the thread and close the
        connections. Later calls fail with L{RuntimeError}.
        """
        if self._closed:
            return
        self._closed = True
        self._pool.stop()
        self._connection.close()
        self._watcher.close()

    def now(self) -> datetime:
        """
        Return the current time of the clock, in UTC.
        """
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    def run(
        self,
        function: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """
        Call C{function(connection, *args, **kwargs)} in the database thread,
        in autocommit mode.
        """
        if self._closed:
            return fail(RuntimeError(f"The database {self.path} is closed."))
        return deferToThreadPool(
            self._reactor, self._pool, function, self._connection, *args, **kwargs
        )

    def read(
        self,
        function: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """
        Call C{function(connection, *args, **kwargs)} in the database thread
        inside a read transaction, so all its queries see one snapshot.
        """
        return self.run(_in_transaction, "BEGIN", function, *args, **kwargs)

    def write(
        self,
        function: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """
        Call C{function(connection, *args, **kwargs)} in the database thread
        inside a C{BEGIN IMMEDIATE} transaction, committed when it returns
        and rolled back when it raises.
        """
        return self.run(_in_transaction, "BEGIN IMMEDIATE", function, *args, **kwargs)

    def revision(self) -> int:
        """
        Return the value of the C{revision} counter, read again only when
        another connection committed since the last read. Runs on the
        calling thread without waiting for locks.
        """
        if self._closed:
            return self._revision
        try:
            ((data_version,),) = self._watcher.execute("PRAGMA data_version").fetchall()
            if data_version != self._data_version:
                ((revision,),) = self._watcher.execute(
                    "SELECT value FROM counters WHERE name = 'revision'"
                ).fetchall()
                self._revision = revision
                self._data_version = data_version
        except sqlite3.OperationalError:
            # SQLITE_BUSY, such as while another connection recovers the
            # log after a crash: keep the last value and read it next time.
            pass
        return self._revision

    def ping(self) -> Deferred[None]:
        """
        Check that the database file is still the one that was opened and
        can be read.

        @return: a L{Deferred} that fails when the file was removed or
            replaced, or a query fails.
        """
        return self.run(_ping, self.path, self._identity)


def _create_private_file(path: str) -> None:
    """
    Create C{path} with mode 0600 if it does not exist. SQLite creates the
    -wal and -shm files with the same mode as the database file.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(descriptor)


def _connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path,
        timeout=busy_timeout_ms / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return connection


def _prepare(connection: sqlite3.Connection, path: str) -> None:
    """
    Switch to write-ahead logging, apply migrations and turn on foreign
    keys on the main connection.
    """
    ((mode,),) = connection.execute("PRAGMA journal_mode = WAL").fetchall()
    if mode.lower() != "wal":
        raise sqlite3.OperationalError(
            f"SQLite could not use write-ahead logging for {path} (journal"
            f" mode is {mode}); put the database on a local file system."
        )

    connection.execute("PRAGMA foreign_keys = OFF")
    apply_migrations(connection)
    connection.execute("PRAGMA foreign_keys = ON")

    connection.row_factory = sqlite3.Row
    # SQLite's lower() folds only ASCII; queries use Python's instead, so
    # they match what the application stores.
    connection.create_function("py_lower", 1, _lower, deterministic=True)


def _lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value


def _file_identity(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return (status.st_dev, status.st_ino)


def _ping(connection: sqlite3.Connection, path: str, identity: tuple[int, int]) -> None:
    try:
        current = _file_identity(path)
    except FileNotFoundError:
        raise RuntimeError(f"The database file {path} was removed.") from None
    if current != identity:
        raise RuntimeError(f"The database file {path} was replaced.")
    connection.execute("SELECT count(*) FROM schema_migrations").fetchall()


def _in_transaction(
    connection: sqlite3.Connection,
    begin: str,
    function: Callable[..., _T],
    *args: Any,
    **kwargs: Any,
) -> _T:
    connection.execute(begin)
    try:
        result = function(connection, *args, **kwargs)
        connection.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back, after an I/O error for one.
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return result


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def _next_number(connection: sqlite3.Connection, counter: str) -> int:
    """
    Hand out the next POSIX id from C{counter}; numbers are never reused.
    """
    ((value,),) = connection.execute(
        "SELECT value FROM counters WHERE name = ?", (counter,)
    ).fetchall()
    connection.execute(
        "UPDATE counters SET value = value + 1 WHERE name = ?", (counter,)
    )
    return int(value)


# Users


_USER_SELECT = """
SELECT u.*,
    (SELECT group_concat(g.name, char(10))
     FROM memberships AS m JOIN groups AS g ON g.id = m.group_id
     WHERE m.user_id = u.id) AS group_names
FROM users AS u
"""

# Matches a lower-cased query against username, email and display name.
_USER_QUERY = (
    "(instr(u.username, :query) OR instr(u.email, :query)"
    " OR instr(py_lower(u.display_name), :query))"
)


@dataclass(frozen=True)
class _NewUser:
    username: str
    email: str
    display_name: str
    fallback_email: str | None
    role: Role
    active: bool
    source: Source
    external_id: str | None


def _user_from_row(row: sqlite3.Row) -> User:
    names = row["group_names"]
    created = _parse_time(row["created_at"])
    updated = _parse_time(row["updated_at"])
    assert created is not None and updated is not None
    return User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        fallback_email=row["fallback_email"],
        display_name=row["display_name"],
        role=Role(row["role"]),
        active=bool(row["active"]),
        source=Source(row["source"]),
        external_id=row["external_id"],
        totp_enabled=bool(row["totp_enabled"]),
        email_verified=bool(row["email_verified"]),
        has_password=bool(row["password_hash"]),
        uid_number=row["uid_number"],
        created_at=created,
        updated_at=updated,
        password_changed_at=_parse_time(row["password_changed_at"]),
        groups=tuple(sorted(names.split("\n"))) if names else (),
    )


def _find_user(connection: sqlite3.Connection, column: str, value: str) -> User | None:
    # column is one of a fixed set of names chosen by the caller, never input.
    rows = connection.execute(
        f"{_USER_SELECT} WHERE u.{column} = ?",
        (value,),
    ).fetchall()
    return _user_from_row(rows[0]) if rows else None


def _fetch_user(connection: sqlite3.Connection, user_id: str) -> User:
    user = _find_user(connection, "id", user_id)
    if user is None:
        raise NotFoundError(f"There is no user with the id {user_id!r}.", "user")
    return user


def _user_row(connection: sqlite3.Connection, user_id: str) -> sqlite3.Row:
    rows = connection.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchall()
    if not rows:
        raise NotFoundError(f"There is no user with the id {user_id!r}.", "user")
    return cast(sqlite3.Row, rows[0])


def _list_users(
    connection: sqlite3.Connection, query: str | None, offset: int, limit: int | None
) -> list[User]:
    where = f"WHERE {_USER_QUERY}" if query else ""
    rows = connection.execute(
        f"{_USER_SELECT} {where} ORDER BY u.username LIMIT :limit OFFSET :offset",
        {"query": query, "limit": -1 if limit is None else limit, "offset": offset},
    ).fetchall()
    return [_user_from_row(row) for row in rows]


def _count_users(connection: sqlite3.Connection, query: str | None) -> int:
    where = f"WHERE {_USER_QUERY}" if query else ""
    ((count,),) = connection.execute(
        f"SELECT count(*) FROM users AS u {where}",  # noqa: S608
        {"query": query},
    ).fetchall()
    return int(count)


def _check_username_free(connection: sqlite3.Connection, username: str) -> None:
    if connection.execute(
        "SELECT 1 FROM users WHERE username = ?", (username,)
    ).fetchall():
        raise ConflictError(f"The username {username!r} is taken.", "username")
    if connection.execute(
        "SELECT 1 FROM retired_usernames WHERE username = ?", (username,)
    ).fetchall():
        raise ConflictError(
            f"The username {username!r} belonged to a deleted user and cannot"
            " be given to anyone else.",
            "username",
        )


def _check_email_free(
    connection: sqlite3.Connection, email: str, user_id: str | None = None
) -> None:
    rows = connection.execute(
        "SELECT id FROM users WHERE email = ?", (email,)
    ).fetchall()
    if rows and rows[0]["id"] != user_id:
        raise ConflictError(
            f"The email address {email!r} belongs to another user.", "email"
        )


def _check_external_id_free(
    connection: sqlite3.Connection, table: str, external_id: str, own_id: str | None
) -> None:
    # table is "users" or "groups", never input.
    rows = connection.execute(
        f"SELECT id FROM {table} WHERE external_id = ?",  # noqa: S608
        (external_id,),
    ).fetchall()
    if rows and rows[0]["id"] != own_id:
        raise ConflictError(
            f"The external id {external_id!r} belongs to another entry.",
            "external_id",
        )


def _insert_user(
    connection: sqlite3.Connection,
    user_id: str,
    new: _NewUser,
    password_hash: str | None,
    now: datetime,
) -> User:
    _check_username_free(connection, new.username)
    _check_email_free(connection, new.email)
    if new.external_id is not None:
        _check_external_id_free(connection, "users", new.external_id, None)

    stamp = _timestamp(now)
    connection.execute(
        "INSERT INTO users (id, username, email, fallback_email, display_name,"
        " password_hash, role, active, source, external_id, email_verified,"
        " uid_number, created_at, updated_at, password_changed_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
        (
            user_id,
            new.username,
            new.email,
            new.fallback_email,
            new.display_name,
            password_hash,
            new.role.value,
            int(new.active),
            new.source.value,
            new.external_id,
            _next_number(connection, "uid_number"),
            stamp,
            stamp,
            stamp if password_hash is not None else None,
        ),
    )
    bump_revision(connection)
    return _fetch_user(connection, user_id)


def _is_active_admin(row: sqlite3.Row) -> bool:
    return bool(row["role"] == Role.admin.value and row["active"])


def _check_not_last_admin(
    connection: sqlite3.Connection, row: sqlite3.Row, action: str
) -> None:
    """
    Raise L{LastAdminError} if C{row} is the only active admin.

    @param action: what the caller would do, for the message (C{delete},
        C{disable}, C{demote}).
    """
    if not _is_active_admin(row):
        return
    ((others,),) = connection.execute(
        "SELECT count(*) FROM users WHERE role = 'admin' AND active = 1 AND id != ?",
        (row["id"],),
    ).fetchall()
    if others == 0:
        raise LastAdminError(
            f"Cannot {action} {row['username']!r}: it is the last active admin."
            " Make another user an admin first.",
            "role" if action == "demote" else None,
        )


def _update_user(
    connection: sqlite3.Connection,
    user_id: str,
    requested: dict[str, Any],
    now: datetime,
) -> tuple[User, list[str]]:
    """
    Apply the requested column values that differ from the stored ones.

    @return: the user and the names of the changed columns.
    """
    row = _user_row(connection, user_id)
    changes = {
        column: value for column, value in requested.items() if row[column] != value
    }
    if not changes:
        return _fetch_user(connection, user_id), []

    if "email" in changes:
        _check_email_free(connection, changes["email"], user_id)
    if changes.get("external_id") is not None:
        _check_external_id_free(connection, "users", changes["external_id"], user_id)
    if changes.get("role", Role.admin.value) != Role.admin.value:
        _check_not_last_admin(connection, row, "demote")
    if changes.get("active", 1) == 0:
        _check_not_last_admin(connection, row, "disable")

    # The column names come from update_user's fixed keyword set.
    assignments = ", ".join(f"{column} = :{column}" for column in changes)
    connection.execute(
        f"UPDATE users SET {assignments}, updated_at = :updated_at"  # noqa: S608
        " WHERE id = :id",
        {**changes, "updated_at": _timestamp(now), "id": user_id},
    )
    bump_revision(connection)
    return _fetch_user(connection, user_id), sorted(changes)


def _delete_user(connection: sqlite3.Connection, user_id: str, now: datetime) -> str:
    row = _user_row(connection, user_id)
    _check_not_last_admin(connection, row, "delete")
    connection.execute(
        "INSERT OR IGNORE INTO retired_usernames (username, user_id, retired_at)"
        " VALUES (?, ?, ?)",
        (row["username"], user_id, _timestamp(now)),
    )
    connection.execute("DELETE FROM users WHERE id = ?", (user_id,))
    bump_revision(connection)
    return str(row["username"])


def _store_password(
    connection: sqlite3.Connection,
    user_id: str,
    password_hash: str | None,
    now: datetime,
) -> User:
    _user_row(connection, user_id)
    stamp = _timestamp(now)
    connection.execute(
        "UPDATE users SET password_hash = ?, password_changed_at = ?,"
        " updated_at = ? WHERE id = ?",
        (password_hash, stamp, stamp, user_id),
    )
    bump_revision(connection)
    return _fetch_user(connection, user_id)


def _password_hash(connection: sqlite3.Connection, user_id: str) -> str | None:
    return cast("str | None", _user_row(connection, user_id)["password_hash"])


def _replace_hash(
    connection: sqlite3.Connection, user_id: str, old_hash: str, new_hash: str
) -> None:
    # Only if the hash is still the one verified: a password set meanwhile
    # wins over the rehash of the old password.
    connection.execute(
        "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
        (new_hash, user_id, old_hash),
    )


# TOTP


def _set_pending_secret(
    connection: sqlite3.Connection, user_id: str, secret: str
) -> None:
    _user_row(connection, user_id)
    connection.execute(
        "UPDATE users SET totp_pending_secret = ? WHERE id = ?", (secret, user_id)
    )


def _confirm_enrolment(
    connection: sqlite3.Connection, user_id: str, code: str, now: float
) -> bool:
    row = _user_row(connection, user_id)
    pending = row["totp_pending_secret"]
    if pending is None:
        return False
    # The new secret has no accepted step yet.
    step = totp.match_step(pending, code, now, None)
    if step is None:
        return False
    connection.execute(
        "UPDATE users SET totp_secret = ?, totp_pending_secret = NULL,"
        " totp_enabled = 1, totp_last_step = ?, updated_at = ? WHERE id = ?",
        (pending, step, _timestamp(datetime.fromtimestamp(now, UTC)), user_id),
    )
    bump_revision(connection)
    return True


def _enable_totp(
    connection: sqlite3.Connection, user_id: str, secret: str, now: datetime
) -> None:
    _user_row(connection, user_id)
    connection.execute(
        "UPDATE users SET totp_secret = ?, totp_pending_secret = NULL,"
        " totp_enabled = 1, totp_last_step = NULL, updated_at = ? WHERE id = ?",
        (secret, _timestamp(now), user_id),
    )
    bump_revision(connection)


def _disable_totp(
    connection: sqlite3.Connection, user_id: str, now: datetime
) -> tuple[User, bool]:
    row = _user_row(connection, user_id)
    was_enabled = bool(row["totp_enabled"])
    if was_enabled or row["totp_secret"] or row["totp_pending_secret"]:
        connection.execute(
            "UPDATE users SET totp_secret = NULL, totp_pending_secret = NULL,"
            " totp_enabled = 0, totp_last_step = NULL, updated_at = ?"
            " WHERE id = ?",
            (_timestamp(now), user_id),
        )
        bump_revision(connection)
    return _fetch_user(connection, user_id), was_enabled


def _verify_totp(
    connection: sqlite3.Connection, user_id: str, code: str, now: float
) -> bool:
    row = _user_row(connection, user_id)
    secret = row["totp_secret"]
    if not row["totp_enabled"] or secret is None:
        return False
    step = totp.match_step(secret, code, now, row["totp_last_step"])
    if step is None:
        return False
    connection.execute(
        "UPDATE users SET totp_last_step = ? WHERE id = ?", (step, user_id)
    )
    return True


# Groups


_GROUP_SELECT = """
SELECT g.*,
    (SELECT group_concat(u.id || ' ' || u.username, char(10))
     FROM memberships AS m JOIN users AS u ON u.id = m.user_id
     WHERE m.group_id = g.id) AS member_list
FROM groups AS g
"""


def _group_from_row(row: sqlite3.Row) -> Group:
    members = row["member_list"]
    pairs = [line.split(" ", 1) for line in members.split("\n")] if members else []
    created = _parse_time(row["created_at"])
    updated = _parse_time(row["updated_at"])
    assert created is not None and updated is not None
    return Group(
        id=row["id"],
        name=row["name"],
        gid_number=row["gid_number"],
        source=Source(row["source"]),
        external_id=row["external_id"],
        created_at=created,
        updated_at=updated,
        members=tuple(sorted(user_id for user_id, _ in pairs)),
        member_usernames=tuple(sorted(username for _, username in pairs)),
    )


def _find_group(
    connection: sqlite3.Connection, column: str, value: str
) -> Group | None:
    # column is one of a fixed set of names chosen by the caller, never input.
    rows = connection.execute(
        f"{_GROUP_SELECT} WHERE g.{column} = ?",
        (value,),
    ).fetchall()
    return _group_from_row(rows[0]) if rows else None


def _fetch_group(connection: sqlite3.Connection, group_id: str) -> Group:
    group = _find_group(connection, "id", group_id)
    if group is None:
        raise NotFoundError(f"There is no group with the id {group_id!r}.", "group")
    return group


def _list_groups(connection: sqlite3.Connection) -> list[Group]:
    rows = connection.execute(f"{_GROUP_SELECT} ORDER BY g.name").fetchall()
    return [_group_from_row(row) for row in rows]


def _groups_of(connection: sqlite3.Connection, user_id: str) -> list[Group]:
    _user_row(connection, user_id)
    rows = connection.execute(
        f"{_GROUP_SELECT} WHERE g.id IN"  # noqa: S608
        " (SELECT group_id FROM memberships WHERE user_id = ?) ORDER BY g.name",
        (user_id,),
    ).fetchall()
    return [_group_from_row(row) for row in rows]


def _check_group_name_free(
    connection: sqlite3.Connection, name: str, group_id: str | None = None
) -> None:
    rows = connection.execute(
        "SELECT id FROM groups WHERE name = ?", (name,)
    ).fetchall()
    if rows and rows[0]["id"] != group_id:
        raise ConflictError(f"The group name {name!r} is taken.", "name")


def _insert_group(
    connection: sqlite3.Connection,
    group_id: str,
    name: str,
    source: Source,
    external_id: str | None,
    now: datetime,
) -> Group:
    _check_group_name_free(connection, name)
    if external_id is not None:
        _check_external_id_free(connection, "groups", external_id, None)
    stamp = _timestamp(now)
    connection.execute(
        "INSERT INTO groups (id, name, gid_number, source, external_id,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            group_id,
            name,
            _next_number(connection, "gid_number"),
            source.value,
            external_id,
            stamp,
            stamp,
        ),
    )
    bump_revision(connection)
    return _fetch_group(connection, group_id)


def _check_writable(group: Group, sync: bool, action: str) -> None:
    if group.source is Source.ldap and not sync:
        raise ReadOnlyError(
            f"Cannot {action} {group.name!r}: the group comes from the external"
            " directory, so change it there.",
            "group",
        )


def _rename_group(
    connection: sqlite3.Connection,
    group_id: str,
    new_name: str,
    sync: bool,
    now: datetime,
) -> tuple[Group, str]:
    group = _fetch_group(connection, group_id)
    if group.name == new_name:
        return group, group.name
    _check_writable(group, sync, "rename")
    _check_group_name_free(connection, new_name, group_id)
    connection.execute(
        "UPDATE groups SET name = ?, updated_at = ? WHERE id = ?",
        (new_name, _timestamp(now), group_id),
    )
    bump_revision(connection)
    return _fetch_group(connection, group_id), group.name


def _delete_group(connection: sqlite3.Connection, group_id: str) -> str:
    group = _fetch_group(connection, group_id)
    connection.execute("DELETE FROM groups WHERE id = ?", (group_id,))
    bump_revision(connection)
    return group.name


def _change_member(
    connection: sqlite3.Connection,
    group_id: str,
    user_id: str,
    add: bool,
    sync: bool,
    now: datetime,
) -> Group:
    group = _fetch_group(connection, group_id)
    _user_row(connection, user_id)
    _check_writable(group, sync, "change the members of")
    if (user_id in group.members) == add:
        return group

    if add:
        connection.execute(
            "INSERT INTO memberships (group_id, user_id) VALUES (?, ?)",
            (group_id, user_id),
        )
    else:
        connection.execute(
            "DELETE FROM memberships WHERE group_id = ? AND user_id = ?",
            (group_id, user_id),
        )
    connection.execute(
        "UPDATE groups SET updated_at = ? WHERE id = ?", (_timestamp(now), group_id)
    )
    bump_revision(connection)
    return _fetch_group(connection, group_id)


# Settings


def _load_settings(connection: sqlite3.Connection) -> dict[str, Any]:
    settings = dict(SETTINGS_DEFAULTS)
    for row in connection.execute("SELECT key, value FROM settings").fetchall():
        settings[row["key"]] = json.loads(row["value"])
    return settings


def _store_setting(
    connection: sqlite3.Connection, key: str, encoded: str, now: datetime
) -> dict[str, Any]:
    connection.execute(
        "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
        " updated_at = excluded.updated_at",
        (key, encoded, _timestamp(now)),
    )
    bump_revision(connection)
    return _load_settings(connection)


def _setting_is_stored(connection: sqlite3.Connection, key: str) -> bool:
    rows = connection.execute("SELECT 1 FROM settings WHERE key = ?", (key,))
    return bool(rows.fetchall())


def _encode_setting(key: str, value: Any) -> str:
    """
    Validate a setting and return its stored JSON text.

    @raise ValidationError: unknown key, wrong type, or a value of an
        C{ldap_server.} or C{external.} key that JSON cannot encode.
    """
    if _FREE_SETTING.fullmatch(key):
        try:
            return json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValidationError(
                f"The setting {key!r} must be a JSON value: {error}.", key
            ) from None
    if not isinstance(value, str | bool):
        raise ValidationError(
            f"The setting {key!r} takes text or true/false, not {value!r}.", key
        )
    return json.dumps(parse_setting(key, value))


# Audit log


def _insert_event(
    connection: sqlite3.Connection,
    now: datetime,
    kind: str,
    outcome: str,
    entry_point: str,
    actor: str | None,
    subject: str | None,
    address: str | None,
    detail: str,
) -> None:
    connection.execute(
        "INSERT INTO audit_events (time, kind, outcome, actor, subject, address,"
        " entry_point, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (_timestamp(now), kind, outcome, actor, subject, address, entry_point, detail),
    )


def _select_events(
    connection: sqlite3.Connection,
    user: str | None,
    kind: str | None,
    offset: int,
    limit: int,
) -> list[AuditEvent]:
    conditions = []
    parameters: dict[str, Any] = {"offset": offset, "limit": limit}
    if user is not None:
        conditions.append("(actor = :user OR subject = :user)")
        parameters["user"] = user
    if kind:
        conditions.append("kind >= :kind")
        parameters["kind"] = kind
        upper = _prefix_upper_bound(kind)
        if upper is not None:
            conditions.append("kind < :kind_to")
            parameters["kind_to"] = upper
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = connection.execute(
        f"SELECT * FROM audit_events {where}"  # noqa: S608
        " ORDER BY id DESC LIMIT :limit OFFSET :offset",
        parameters,
    ).fetchall()
    return [
        AuditEvent(
            id=row["id"],
            time=datetime.fromisoformat(row["time"]),
            kind=row["kind"],
            outcome=row["outcome"],
            actor=row["actor"],
            subject=row["subject"],
            address=row["address"],
            entry_point=row["entry_point"],
            detail=row["detail"],
        )
        for row in rows
    ]


def _prefix_upper_bound(prefix: str) -> str | None:
    """
    Return the smallest string greater than every string that starts with
    C{prefix}, or C{None} if there is none. With C{kind >= prefix} it makes
    a prefix match that can use the index on kind; SQLite compares text as
    UTF-8 bytes, which sort in code point order.
    """
    stripped = prefix.rstrip(chr(0x10FFFF))
    if not stripped:
        return None
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)


# Rate limits


def _add_failure(
    connection: sqlite3.Connection, key: str, window: float, now: float
) -> int:
    connection.execute(
        "DELETE FROM rate_limit_failures WHERE key = ? AND time <= ?",
        (key, now - window),
    )
    connection.execute(
        "DELETE FROM rate_limit_failures WHERE time <= ?",
        (now - max(window, RATE_LIMIT_RETENTION),),
    )
    connection.execute(
        "INSERT INTO rate_limit_failures (key, time) VALUES (?, ?)", (key, now)
    )
    return _count_failures(connection, key, window, now)


def _count_failures(
    connection: sqlite3.Connection, key: str, window: float, now: float
) -> int:
    ((count,),) = connection.execute(
        "SELECT count(*) FROM rate_limit_failures WHERE key = ? AND time > ?",
        (key, now - window),
    ).fetchall()
    return int(count)


def _reset_failures(connection: sqlite3.Connection, key: str) -> None:
    connection.execute("DELETE FROM rate_limit_failures WHERE key = ?", (key,))


# Input checks shared by the methods


def _role(value: str | Role) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValidationError(
            f"The role {value!r} is invalid: use admin or user.", "role"
        ) from None


def _source(value: str | Source) -> Source:
    try:
        return Source(value)
    except ValueError:
        raise ValidationError(
            f"The source {value!r} is invalid: use local or ldap.", "source"
        ) from None


def _optional_email(value: str | None, field: str) -> str | None:
    if value is None or not value.strip():
        return None
    return normalize_email(value, field)


def _optional_text(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value.strip()


def _lookup_key(value: str) -> str:
    return value.strip().lower()


def _start(coroutine: Coroutine[Any, Any, _T]) -> Deferred[_T]:
    return Deferred.fromCoroutine(coroutine)


@implementer(IDirectory, IAuditLog, IRateLimitStore)
class SQLiteDirectory:
    """
    Users, groups, settings, the audit log and rate-limit counters in a
    SQLite database. Create it with L{open_directory}.

    @ivar database: the database, which other SQLite stores of the same file
        may share.
    @ivar hasher: hashes and verifies passwords.
    """

    log = Logger()

    def __init__(self, database: Database, hasher: IPasswordHasher) -> None:
        self.database = database
        self.hasher = hasher

    def close(self) -> None:
        """
        Close the database. Pending calls finish first; later calls fail with
        L{RuntimeError}. The hasher is not stopped.
        """
        self.database.close()

    def ping(self) -> Deferred[None]:
        """
        Check that the database can be read, for a health check.

        @return: a L{Deferred} that fails when the file was removed or
            replaced, the directory is closed, or a query fails.
        """
        return self.database.ping()

    def revision(self) -> int:
        """
        Return the revision counter, which grows with every change of users,
        groups, memberships or settings made by any process. Cheap, and does
        not wait for locks (see the module documentation).
        """
        return self.database.revision()

    # Users

    def add_user(
        self,
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
        Create a user whose email counts as verified, hashing C{password}
        when one is given. See L{IDirectory.add_user}.
        """
        return _start(
            self._add_user(
                username,
                email,
                display_name=display_name,
                fallback_email=fallback_email,
                role=role,
                password=password,
                active=active,
                source=source,
                external_id=external_id,
            )
        )

    async def _add_user(
        self,
        username: str,
        email: str,
        *,
        display_name: str,
        fallback_email: str | None,
        role: str,
        password: str | None,
        active: bool,
        source: str,
        external_id: str | None,
    ) -> User:
        new = _NewUser(
            username=normalize_username(username),
            email=normalize_email(email),
            display_name=validate_display_name(display_name),
            fallback_email=_optional_email(fallback_email, "fallback_email"),
            role=_role(role),
            active=bool(active),
            source=_source(source),
            external_id=_optional_text(external_id),
        )
        password_hash = None
        if password is not None:
            validate_password(password, new.username)
            password_hash = await self.hasher.hash(password)

        user = await self.database.write(
            _insert_user, _new_id("uid"), new, password_hash, self.database.now()
        )
        self.log.info(
            "Added user {username} ({user_id}), role {role}, source {source}",
            username=user.username,
            user_id=user.id,
            role=user.role.value,
            source=user.source.value,
        )
        return user

    def get_user(self, user_id: str) -> Deferred[User]:
        return self.database.run(_fetch_user, user_id)

    def user_by_username(self, username: str) -> Deferred[User | None]:
        return self.database.run(_find_user, "username", _lookup_key(username))

    def user_by_email(self, email: str) -> Deferred[User | None]:
        return self.database.run(_find_user, "email", _lookup_key(email))

    def user_by_login(self, name: str) -> Deferred[User | None]:
        if "@" in name:
            return self.user_by_email(name)
        return self.user_by_username(name)

    def user_by_external_id(self, external_id: str) -> Deferred[User | None]:
        return self.database.run(_find_user, "external_id", external_id)

    def list_users(
        self, *, query: str | None = None, offset: int = 0, limit: int | None = None
    ) -> Deferred[list[User]]:
        try:
            _check_page(offset, limit)
        except ValidationError as error:
            return fail(error)
        needle = _lookup_key(query) if query else None
        return self.database.read(_list_users, needle, offset, limit)

    def count_users(self, *, query: str | None = None) -> Deferred[int]:
        needle = _lookup_key(query) if query else None
        return self.database.run(_count_users, needle)

    def update_user(
        self,
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
        C{fallback_email} or C{external_id} clears it.

        C{email_verified} is not changed unless given: an administrator or
        the sync code setting an email passes C{True}, and a user changing
        their own passes C{False}. This method does not reject changes to
        external users (see the module documentation).

        @raise LastAdminError: the change would leave no active admin.
        @raise ConflictError: the email or external id belongs to another
            user.
        """
        return _start(
            self._update_user(
                user_id,
                email=email,
                fallback_email=fallback_email,
                display_name=display_name,
                role=role,
                active=active,
                email_verified=email_verified,
                external_id=external_id,
            )
        )

    async def _update_user(
        self,
        user_id: str,
        *,
        email: str | None,
        fallback_email: str | None,
        display_name: str | None,
        role: str | None,
        active: bool | None,
        email_verified: bool | None,
        external_id: str | None,
    ) -> User:
        requested: dict[str, Any] = {}
        if email is not None:
            requested["email"] = normalize_email(email)
        if fallback_email is not None:
            requested["fallback_email"] = _optional_email(
                fallback_email, "fallback_email"
            )
        if display_name is not None:
            requested["display_name"] = validate_display_name(display_name)
        if role is not None:
            requested["role"] = _role(role).value
        if active is not None:
            requested["active"] = int(bool(active))
        if email_verified is not None:
            requested["email_verified"] = int(bool(email_verified))
        if external_id is not None:
            requested["external_id"] = _optional_text(external_id)

        user, changed = await self.database.write(
            _update_user, user_id, requested, self.database.now()
        )
        if changed:
            self.log.info(
                "Changed {fields} of user {username} ({user_id})",
                fields=", ".join(changed),
                username=user.username,
                user_id=user.id,
            )
        return user

    def delete_user(self, user_id: str) -> Deferred[None]:
        return _start(self._delete_user(user_id))

    async def _delete_user(self, user_id: str) -> None:
        username = await self.database.write(_delete_user, user_id, self.database.now())
        self.log.info(
            "Deleted user {username} ({user_id}); the username stays retired",
            username=username,
            user_id=user_id,
        )

    def set_password(self, user_id: str, password: str | None) -> Deferred[User]:
        return _start(self._set_password(user_id, password))

    async def _set_password(self, user_id: str, password: str | None) -> User:
        password_hash = None
        if password is not None:
            user = await self.get_user(user_id)
            validate_password(password, user.username)
            password_hash = await self.hasher.hash(password)
        user = await self.database.write(
            _store_password, user_id, password_hash, self.database.now()
        )
        self.log.info(
            "{action} the password of user {username} ({user_id})",
            action="Set" if password_hash is not None else "Removed",
            username=user.username,
            user_id=user.id,
        )
        return user

    def check_password(self, user_id: str, password: str) -> Deferred[bool]:
        return _start(self._check_password(user_id, password))

    async def _check_password(self, user_id: str, password: str) -> bool:
        encoded = await self.database.run(_password_hash, user_id)
        if not password or not encoded:
            return False
        matches, new_hash = await self.hasher.verify(encoded, password)
        if matches and new_hash is not None:
            await self.database.write(_replace_hash, user_id, encoded, new_hash)
            self.log.info(
                "Rehashed the password of user {user_id} with the current parameters",
                user_id=user_id,
            )
        return matches

    # TOTP

    def start_totp_enrolment(self, user_id: str) -> Deferred[str]:
        secret = totp.new_secret()
        d = self.database.write(_set_pending_secret, user_id, secret)
        return d.addCallback(lambda _: secret)

    def confirm_totp_enrolment(self, user_id: str, code: str) -> Deferred[bool]:
        return _start(self._confirm_totp_enrolment(user_id, code))

    async def _confirm_totp_enrolment(self, user_id: str, code: str) -> bool:
        confirmed = await self.database.write(
            _confirm_enrolment, user_id, code, self.database.clock.seconds()
        )
        if confirmed:
            self.log.info("Turned on 2FA for user {user_id}", user_id=user_id)
        return confirmed

    def enable_totp(self, user_id: str) -> Deferred[str]:
        return _start(self._enable_totp(user_id))

    async def _enable_totp(self, user_id: str) -> str:
        secret = totp.new_secret()
        await self.database.write(_enable_totp, user_id, secret, self.database.now())
        self.log.info(
            "Turned on 2FA with a new secret for user {user_id}", user_id=user_id
        )
        return secret

    def disable_totp(self, user_id: str) -> Deferred[User]:
        return _start(self._disable_totp(user_id))

    async def _disable_totp(self, user_id: str) -> User:
        user, was_enabled = await self.database.write(
            _disable_totp, user_id, self.database.now()
        )
        if was_enabled:
            self.log.info(
                "Turned off 2FA for user {username} ({user_id})",
                username=user.username,
                user_id=user.id,
            )
        return user

    def verify_totp(self, user_id: str, code: str) -> Deferred[bool]:
        return self.database.write(
            _verify_totp, user_id, code, self.database.clock.seconds()
        )

    # Groups

    def add_group(
        self, name: str, *, source: str = "local", external_id: str | None = None
    ) -> Deferred[Group]:
        return _start(self._add_group(name, source=source, external_id=external_id))

    async def _add_group(
        self, name: str, *, source: str, external_id: str | None
    ) -> Group:
        group = await self.database.write(
            _insert_group,
            _new_id("gid"),
            normalize_group_name(name),
            _source(source),
            _optional_text(external_id),
            self.database.now(),
        )
        self.log.info(
            "Added group {name} ({group_id})", name=group.name, group_id=group.id
        )
        return group

    def get_group(self, group_id: str) -> Deferred[Group]:
        return self.database.run(_fetch_group, group_id)

    def group_by_name(self, name: str) -> Deferred[Group | None]:
        return self.database.run(_find_group, "name", _lookup_key(name))

    def group_by_external_id(self, external_id: str) -> Deferred[Group | None]:
        """
        Find a synced group by its stable id in the external directory.
        """
        return self.database.run(_find_group, "external_id", external_id)

    def list_groups(self) -> Deferred[list[Group]]:
        return self.database.run(_list_groups)

    def rename_group(
        self, group_id: str, new_name: str, *, sync: bool = False
    ) -> Deferred[Group]:
        """
        Rename a group. See L{IDirectory.rename_group}.

        @param sync: allow renaming an external group (for the sync code).
        @raise ReadOnlyError: the group is external and C{sync} is false.
        """
        return _start(self._rename_group(group_id, new_name, sync=sync))

    async def _rename_group(self, group_id: str, new_name: str, *, sync: bool) -> Group:
        group, old_name = await self.database.write(
            _rename_group,
            group_id,
            normalize_group_name(new_name),
            sync,
            self.database.now(),
        )
        if group.name != old_name:
            self.log.info(
                "Renamed group {old_name} to {name} ({group_id})",
                old_name=old_name,
                name=group.name,
                group_id=group.id,
            )
        return group

    def delete_group(self, group_id: str) -> Deferred[None]:
        """
        Delete a group and its memberships. External groups may be deleted
        too; the next sync creates them again if they still exist upstream.

        @raise NotFoundError: there is no group with this id.
        """
        return _start(self._delete_group(group_id))

    async def _delete_group(self, group_id: str) -> None:
        name = await self.database.write(_delete_group, group_id)
        self.log.info("Deleted group {name} ({group_id})", name=name, group_id=group_id)

    def add_member(
        self, group_id: str, user_id: str, *, sync: bool = False
    ) -> Deferred[Group]:
        """
        Add a user to a group. See L{IDirectory.add_member}.

        @param sync: allow changing an external group (for the sync code).
        @raise ReadOnlyError: the group is external and C{sync} is false.
        @raise NotFoundError: the group or the user does not exist.
        """
        return self.database.write(
            _change_member, group_id, user_id, True, sync, self.database.now()
        )

    def remove_member(
        self, group_id: str, user_id: str, *, sync: bool = False
    ) -> Deferred[Group]:
        """
        Remove a user from a group. See L{IDirectory.remove_member}.

        @param sync: allow changing an external group (for the sync code).
        @raise ReadOnlyError: the group is external and C{sync} is false.
        @raise NotFoundError: the group or the user does not exist.
        """
        return self.database.write(
            _change_member, group_id, user_id, False, sync, self.database.now()
        )

    def groups_of(self, user_id: str) -> Deferred[list[Group]]:
        """
        Return the groups the user is a member of, ordered by name.

        @raise NotFoundError: there is no user with this id.
        """
        return self.database.read(_groups_of, user_id)

    # Settings

    def get_settings(self) -> Deferred[dict[str, Any]]:
        return self.database.run(_load_settings)

    def set_setting(self, key: str, value: Any) -> Deferred[dict[str, Any]]:
        return _start(self._set_setting(key, value))

    async def _set_setting(self, key: str, value: Any) -> dict[str, Any]:
        encoded = _encode_setting(key, value)
        settings = await self.database.write(
            _store_setting, key, encoded, self.database.now()
        )
        # Only the key: values of external.* settings may hold a bind password.
        self.log.info("Stored setting {key}", key=key)
        return settings

    def setting_is_stored(self, key: str) -> Deferred[bool]:
        """
        Return whether C{key} was ever set, as opposed to having its default.
        """
        return self.database.run(_setting_is_stored, key)

    # Audit log

    def record(
        self,
        kind: str,
        outcome: str,
        *,
        entry_point: str,
        actor: str | None = None,
        subject: str | None = None,
        address: str | None = None,
        detail: str = "",
    ) -> Deferred[None]:
        return self.database.write(
            _insert_event,
            self.database.now(),
            kind,
            outcome,
            entry_point,
            actor,
            subject,
            address,
            detail,
        )

    def events(
        self,
        *,
        user: str | None = None,
        kind: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> Deferred[list[AuditEvent]]:
        try:
            _check_page(offset, limit)
        except ValidationError as error:
            return fail(error)
        return self.database.run(_select_events, user, kind, offset, limit)

    # Rate limits

    def add_failure(self, key: str, window: float) -> Deferred[int]:
        """
        Count one failure for C{key} and return the failures within the last
        C{window} seconds. Also deletes the key's older rows, so each key
        must be used with one window.
        """
        return self.database.write(
            _add_failure, key, window, self.database.clock.seconds()
        )

    def failures(self, key: str, window: float) -> Deferred[int]:
        return self.database.run(
            _count_failures, key, window, self.database.clock.seconds()
        )

    def reset(self, key: str) -> Deferred[None]:
        return self.database.write(_reset_failures, key)


def _check_page(offset: int, limit: int | None) -> None:
    if offset < 0:
        raise ValidationError(
            f"The offset must not be negative, not {offset}.", "offset"
        )
    if limit is not None and limit < 0:
        raise ValidationError(f"The limit must not be negative, not {limit}.", "limit")
