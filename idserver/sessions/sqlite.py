"""
The default session store: tables in the directory's SQLite database.
"""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from zope.interface import implementer

from idserver.directory.sqlite import Database
from idserver.interfaces import IRateLimitStore, ISessionStore
from idserver.sessions.model import (
    AccessToken,
    AuthorizationCode,
    BrowserSession,
    Grant,
    RefreshToken,
)

__all__ = ["SQLiteSessionStore"]

_NEW_GRANT_MARGIN = 300.0

# Tokens are inserted only while their grant exists: a grant revoked while a
# token request was in flight leaves no token behind.
_IF_GRANT_EXISTS = "WHERE EXISTS (SELECT 1 FROM grants WHERE id = ?)"


# Columns that store a tuple of words as one space-separated string.
_WORD_COLUMNS = frozenset({"amr", "scope"})

_Record = TypeVar(
    "_Record", BrowserSession, AuthorizationCode, Grant, RefreshToken, AccessToken
)


def _words(value: str) -> tuple[str, ...]:
    return tuple(value.split())


def _record(kind: type[_Record], row: sqlite3.Row) -> _Record:
    """
    Build a C{kind} from a row whose columns are named as its fields.
    """
    values: dict[str, Any] = {
        field.name: (
            _words(row[field.name]) if field.name in _WORD_COLUMNS else row[field.name]
        )
        for field in fields(kind)
    }
    return kind(**values)


def _one(connection: sqlite3.Connection, sql: str, *args: Any) -> sqlite3.Row | None:
    cursor = connection.execute(sql, args)
    cursor.row_factory = sqlite3.Row
    row: sqlite3.Row | None = cursor.fetchone()
    return row


def _all(connection: sqlite3.Connection, sql: str, *args: Any) -> list[sqlite3.Row]:
    cursor = connection.execute(sql, args)
    cursor.row_factory = sqlite3.Row
    return cursor.fetchall()


def _revoke_grants(connection: sqlite3.Connection, where: str, *args: Any) -> int:
    # C{where} is always a constant of this module; values go in C{args}.
    query = f"SELECT id FROM grants {where}"  # noqa: S608
    ids = [row[0] for row in connection.execute(query, args)]
    for grant_id in ids:
        connection.execute("DELETE FROM refresh_tokens WHERE grant_id = ?", (grant_id,))
        connection.execute("DELETE FROM access_tokens WHERE grant_id = ?", (grant_id,))
        connection.execute("DELETE FROM grants WHERE id = ?", (grant_id,))
    return len(ids)


@implementer(ISessionStore)
class SQLiteSessionStore:
    """
    An L{ISessionStore} in the directory's SQLite database, sharing its
    connection and thread.

    The rate-limit counters are the directory's: calls of
    L{IRateLimitStore} go to C{rate_limits}, so LDAP binds and web logins
    count failures in one place.
    """

    def __init__(self, database: Database, rate_limits: IRateLimitStore) -> None:
        self._db = database
        self._rate_limits = rate_limits

    # IRateLimitStore

    def add_failure(self, key: str, window: float) -> Deferred[int]:
        return self._rate_limits.add_failure(key, window)

    def failures(self, key: str, window: float) -> Deferred[int]:
        return self._rate_limits.failures(key, window)

    def reset(self, key: str) -> Deferred[None]:
        return self._rate_limits.reset(key)

    # Browser sessions

    def add_session(self, session: BrowserSession) -> Deferred[None]:
        def add(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO browser_sessions (key, sid, user_id, state, csrf_token,"
                " amr, auth_time, created_at, last_seen, expires_at, address,"
                " user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.key,
                    session.sid,
                    session.user_id,
                    session.state,
                    session.csrf_token,
                    " ".join(session.amr),
                    session.auth_time,
                    session.created_at,
                    session.last_seen,
                    session.expires_at,
                    session.address,
                    session.user_agent,
                ),
            )

        return self._db.write(add)

    def get_session(self, key: str) -> Deferred[BrowserSession | None]:
        def get(connection: sqlite3.Connection) -> BrowserSession | None:
            row = _one(connection, "SELECT * FROM browser_sessions WHERE key = ?", key)
            return None if row is None else _record(BrowserSession, row)

        return self._db.read(get)

    def touch_session(self, key: str, last_seen: float) -> Deferred[None]:
        def touch(connection: sqlite3.Connection) -> None:
            connection.execute(
                "UPDATE browser_sessions SET last_seen = ? WHERE key = ?",
                (last_seen, key),
            )

        return self._db.write(touch)

    def delete_session(self, key: str) -> Deferred[None]:
        def delete(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM browser_sessions WHERE key = ?", (key,))

        return self._db.write(delete)

    def delete_session_by_sid(self, user_id: str, sid: str) -> Deferred[bool]:
        def delete(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "DELETE FROM browser_sessions WHERE user_id = ? AND sid = ?",
                (user_id, sid),
            )
            return cursor.rowcount > 0

        return self._db.write(delete)

    def sessions_of(self, user_id: str) -> Deferred[list[BrowserSession]]:
        def select(connection: sqlite3.Connection) -> list[BrowserSession]:
            rows = _all(
                connection,
                "SELECT * FROM browser_sessions WHERE user_id = ?"
                " ORDER BY created_at DESC",
                user_id,
            )
            return [_record(BrowserSession, row) for row in rows]

        return self._db.read(select)

    # Authorization codes

    def add_code(self, code: AuthorizationCode) -> Deferred[None]:
        def add(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO authorization_codes (key, client_id, user_id,"
                " redirect_uri, scope, nonce, code_challenge, sid, auth_time, amr,"
                " issued_at, expires_at, used_at, grant_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    code.key,
                    code.client_id,
                    code.user_id,
                    code.redirect_uri,
                    " ".join(code.scope),
                    code.nonce,
                    code.code_challenge,
                    code.sid,
                    code.auth_time,
                    " ".join(code.amr),
                    code.issued_at,
                    code.expires_at,
                    code.used_at,
                    code.grant_id,
                ),
            )

        return self._db.write(add)

    def redeem_code(
        self, key: str, grant_id: str, now: float
    ) -> Deferred[AuthorizationCode | None]:
        def redeem(connection: sqlite3.Connection) -> AuthorizationCode | None:
            row = _one(
                connection, "SELECT * FROM authorization_codes WHERE key = ?", key
            )
            if row is None:
                return None
            code = _record(AuthorizationCode, row)
            if code.used_at is None:
                connection.execute(
                    "UPDATE authorization_codes SET used_at = ?, grant_id = ?"
                    " WHERE key = ?",
                    (now, grant_id, key),
                )
            return code

        return self._db.write(redeem)

    # Grants and tokens

    def add_grant(self, grant: Grant) -> Deferred[None]:
        def add(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO grants (id, user_id, client_id, scope, sid, auth_time,"
                " amr, created_at, last_used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    grant.id,
                    grant.user_id,
                    grant.client_id,
                    " ".join(grant.scope),
                    grant.sid,
                    grant.auth_time,
                    " ".join(grant.amr),
                    grant.created_at,
                    grant.last_used,
                ),
            )

        return self._db.write(add)

    def get_grant(self, grant_id: str) -> Deferred[Grant | None]:
        def get(connection: sqlite3.Connection) -> Grant | None:
            row = _one(connection, "SELECT * FROM grants WHERE id = ?", grant_id)
            return None if row is None else _record(Grant, row)

        return self._db.read(get)

    def grants_of(self, user_id: str) -> Deferred[list[Grant]]:
        def select(connection: sqlite3.Connection) -> list[Grant]:
            rows = _all(
                connection,
                "SELECT * FROM grants WHERE user_id = ? ORDER BY created_at DESC",
                user_id,
            )
            return [_record(Grant, row) for row in rows]

        return self._db.read(select)

    def revoke_grant(self, grant_id: str) -> Deferred[None]:
        def revoke(connection: sqlite3.Connection) -> None:
            _revoke_grants(connection, "WHERE id = ?", grant_id)

        return self._db.write(revoke)

    def add_refresh_token(self, token: RefreshToken, now: float) -> Deferred[None]:
        def add(connection: sqlite3.Connection) -> None:
            connection.execute(
                "UPDATE refresh_tokens SET rotated_at = ?"
                " WHERE grant_id = ? AND rotated_at IS NULL",
                (now, token.grant_id),
            )
            connection.execute(
                "INSERT INTO refresh_tokens (key, grant_id, client_id, issued_at,"
                f" expires_at, rotated_at) SELECT ?, ?, ?, ?, ?, ? {_IF_GRANT_EXISTS}",
                (
                    token.key,
                    token.grant_id,
                    token.client_id,
                    token.issued_at,
                    token.expires_at,
                    token.rotated_at,
                    token.grant_id,
                ),
            )
            connection.execute(
                "UPDATE grants SET last_used = ? WHERE id = ?", (now, token.grant_id)
            )

        return self._db.write(add)

    def get_refresh_token(self, key: str) -> Deferred[RefreshToken | None]:
        def get(connection: sqlite3.Connection) -> RefreshToken | None:
            row = _one(connection, "SELECT * FROM refresh_tokens WHERE key = ?", key)
            return None if row is None else _record(RefreshToken, row)

        return self._db.read(get)

    def rotate_refresh_token(self, key: str, now: float) -> Deferred[bool]:
        def rotate(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE refresh_tokens SET rotated_at = ?"
                " WHERE key = ? AND rotated_at IS NULL",
                (now, key),
            )
            return cursor.rowcount == 1

        return self._db.write(rotate)

    def add_access_token(self, token: AccessToken) -> Deferred[None]:
        def add(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO access_tokens (key, grant_id, client_id, user_id,"
                " scope, issued_at, expires_at) SELECT ?, ?, ?, ?, ?, ?, ?"
                f" {_IF_GRANT_EXISTS}",
                (
                    token.key,
                    token.grant_id,
                    token.client_id,
                    token.user_id,
                    " ".join(token.scope),
                    token.issued_at,
                    token.expires_at,
                    token.grant_id,
                ),
            )

        return self._db.write(add)

    def get_access_token(self, key: str) -> Deferred[AccessToken | None]:
        def get(connection: sqlite3.Connection) -> AccessToken | None:
            row = _one(connection, "SELECT * FROM access_tokens WHERE key = ?", key)
            return None if row is None else _record(AccessToken, row)

        return self._db.read(get)

    def delete_access_token(self, key: str) -> Deferred[None]:
        def delete(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM access_tokens WHERE key = ?", (key,))

        return self._db.write(delete)

    # Whole users and housekeeping

    def user_ids(self) -> Deferred[set[str]]:
        def select(connection: sqlite3.Connection) -> set[str]:
            rows = connection.execute(
                "SELECT user_id FROM browser_sessions WHERE user_id IS NOT NULL"
                " UNION SELECT user_id FROM grants"
            )
            return {row[0] for row in rows}

        return self._db.read(select)

    def end_user_sessions(self, user_id: str) -> Deferred[int]:
        def end(connection: sqlite3.Connection) -> int:
            cursor = connection.execute(
                "DELETE FROM browser_sessions WHERE user_id = ?", (user_id,)
            )
            return cursor.rowcount + _revoke_grants(
                connection, "WHERE user_id = ?", user_id
            )

        return self._db.write(end)

    def purge_expired(self, now: float) -> Deferred[int]:
        def purge(connection: sqlite3.Connection) -> int:
            count = 0
            for table in (
                "browser_sessions",
                "authorization_codes",
                "refresh_tokens",
                "access_tokens",
            ):
                cursor = connection.execute(
                    f"DELETE FROM {table} WHERE expires_at < ?",  # noqa: S608
                    (now,),
                )
                count += cursor.rowcount
            # A grant gets its first refresh token right after it is created;
            # the margin keeps a purge from removing one in between.
            count += _revoke_grants(
                connection,
                "WHERE last_used < ? AND NOT EXISTS (SELECT 1 FROM refresh_tokens"
                " WHERE refresh_tokens.grant_id = grants.id)",
                now - _NEW_GRANT_MARGIN,
            )
            return count

        return self._db.write(purge)
