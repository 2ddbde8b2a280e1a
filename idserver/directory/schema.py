"""
Schema migrations for the SQLite database.

The schema is a series of files C{NNNN_name.sql} in the
L{idserver.migrations} package. L{apply_migrations} applies those that the
database has not seen, in the order of their numbers, and records each in
the C{schema_migrations} table.

Each file runs in its own C{BEGIN EXCLUSIVE} transaction that also checks
and writes the record, so when the daemon and C{idserver-admin} start at
the same time, one of them applies a file and the other waits for the lock,
finds the record and skips the file. A file that fails leaves the database as it
was before that file.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from twisted.logger import Logger

__all__ = [
    "Migration",
    "SchemaError",
    "applied_versions",
    "apply_migrations",
    "find_migrations",
    "split_statements",
]

log = Logger()

_FILE_NAME = re.compile(r"(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql")


class SchemaError(Exception):
    """
    The migration files or the database schema are not usable.
    """


@dataclass(frozen=True)
class Migration:
    """
    One migration file.

    @ivar version: the number at the start of the file name.
    @ivar name: the rest of the file name, without C{.sql}.
    @ivar sql: the SQL statements.
    """

    version: int
    name: str
    sql: str = field(repr=False)


def find_migrations(source: Traversable | str | None = None) -> list[Migration]:
    """
    Read the migration files, ordered by number.

    Files whose names do not have the form C{NNNN_name.sql} are ignored.

    @param source: the folder to read; by default the L{idserver.migrations}
        package.
    @raise SchemaError: two files have the same number.
    """
    if source is None:
        folder: Traversable = files("idserver.migrations")
    elif isinstance(source, str):
        folder = Path(source)
    else:
        folder = source

    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match is None or not entry.is_file():
            continue
        version = int(match.group("version"))
        if version in found:
            raise SchemaError(
                f"Two migration files have the number {version:04d}:"
                f" {found[version].name} and {match.group('name')}."
            )
        found[version] = Migration(
            version, match.group("name"), entry.read_text(encoding="utf-8")
        )
    return [found[version] for version in sorted(found)]


def applied_versions(connection: sqlite3.Connection) -> set[int]:
    """
    Return the numbers of the migrations applied to the database.
    """
    if not _has_migrations_table(connection):
        return set()
    rows = connection.execute("SELECT version FROM schema_migrations").fetchall()
    return {version for (version,) in rows}


def apply_migrations(
    connection: sqlite3.Connection, migrations: list[Migration] | None = None
) -> list[int]:
    """
    Apply the migrations that the database has not recorded yet.

    The connection must be in autocommit mode (C{isolation_level=None}),
    outside a transaction, and should have a busy timeout so that it waits
    for another process that is migrating. Foreign key enforcement must be
    off: SQLite's procedure for changing a table recreates it, which would
    otherwise cascade deletes. Instead, each migration ends with
    C{PRAGMA foreign_key_check} and fails if it left a dangling reference.

    @param migrations: the migrations to apply; by default
        L{find_migrations}.
    @return: the numbers of the migrations this call applied.
    @raise SchemaError: a migration failed, or the database has a migration
        that this version of idserver does not know, so it was written by a
        newer version.
    """
    if migrations is None:
        migrations = find_migrations()
    if connection.in_transaction:
        raise SchemaError("Migrations must start outside a transaction.")
    (foreign_keys,) = connection.execute("PRAGMA foreign_keys").fetchone()
    if foreign_keys:
        raise SchemaError("Migrations must run with foreign_keys off.")

    _check_known(connection, migrations)
    # Checked first without a lock, so that opening an up-to-date database
    # never waits for another process's write transaction.
    already = applied_versions(connection)
    applied = []
    for migration in migrations:
        if migration.version in already:
            continue
        if _apply_one(connection, migration):
            applied.append(migration.version)
    return applied


def _apply_one(connection: sqlite3.Connection, migration: Migration) -> bool:
    """
    Apply one migration under an exclusive lock unless it is recorded by
    then.

    @return: whether this call applied it.
    """
    connection.execute("BEGIN EXCLUSIVE")
    try:
        _create_migrations_table(connection)
        recorded = connection.execute(
            "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
        ).fetchone()
        if recorded is not None:
            connection.execute("COMMIT")
            return False

        for statement in split_statements(migration.sql):
            connection.execute(statement)
        _check_foreign_keys(connection, migration)
        connection.execute(
            "INSERT INTO schema_migrations (version, name, applied_at)"
            " VALUES (?, ?, ?)",
            (
                migration.version,
                migration.name,
                datetime.now(UTC).isoformat(timespec="microseconds"),
            ),
        )
        connection.execute("COMMIT")
    except BaseException as error:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        if isinstance(error, sqlite3.Error):
            raise SchemaError(
                f"Schema migration {migration.version:04d}_{migration.name}"
                f" failed: {error}"
            ) from error
        raise

    log.info(
        "Applied schema migration {version:04d}_{name}",
        version=migration.version,
        name=migration.name,
    )
    return True


def split_statements(sql: str) -> list[str]:
    """
    Split a script into single statements.

    L{sqlite3.Connection.executescript} would do this but commits first,
    which would break the migration's transaction, so the script is cut at
    each semicolon where L{sqlite3.complete_statement} reports a complete
    statement (not inside a string, comment or trigger body).

    @raise SchemaError: text other than comments follows the last complete
        statement.
    """
    statements = []
    start = 0
    position = sql.find(";")
    while position != -1:
        candidate = sql[start : position + 1]
        if sqlite3.complete_statement(candidate):
            statements.append(candidate.strip())
            start = position + 1
        position = sql.find(";", position + 1)

    rest = sql[start:]
    if _strip_comments(rest).strip():
        raise SchemaError(f"Incomplete SQL statement at the end: {rest.strip()!r}")
    return statements


def _strip_comments(sql: str) -> str:
    # Only used on a tail that has no complete statement, to tell comments
    # from a statement that lacks its semicolon.
    without_blocks = re.sub(r"/\*.*?\*/", "", sql, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", "", without_blocks)


def _check_known(connection: sqlite3.Connection, migrations: list[Migration]) -> None:
    known = {migration.version for migration in migrations}
    unknown = applied_versions(connection) - known
    if unknown:
        versions = ", ".join(f"{version:04d}" for version in sorted(unknown))
        raise SchemaError(
            f"The database has schema migrations that this version of idserver"
            f" does not know ({versions}); it was used by a newer version."
            " Upgrade idserver or restore a backup."
        )


def _check_foreign_keys(connection: sqlite3.Connection, migration: Migration) -> None:
    problems = connection.execute("PRAGMA foreign_key_check").fetchall()
    if problems:
        table, rowid, parent, _ = problems[0]
        raise SchemaError(
            f"Schema migration {migration.version:04d}_{migration.name} left"
            f" {len(problems)} rows with a dangling foreign key, such as row"
            f" {rowid} of {table} pointing to {parent}."
        )


def _has_migrations_table(connection: sqlite3.Connection) -> bool:
    row = connection.execute(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table'"
        " AND name = 'schema_migrations'"
    ).fetchone()
    return row is not None


def _create_migrations_table(connection: sqlite3.Connection) -> None:
    connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL)"
    )
