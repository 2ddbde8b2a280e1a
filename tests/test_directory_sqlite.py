"""
Tests for L{idserver.directory.sqlite} and L{idserver.directory.schema}.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
import textwrap
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.threadable import isInIOThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from idserver.directory.schema import (
    SchemaError,
    applied_versions,
    apply_migrations,
    find_migrations,
    split_statements,
)
from idserver.directory.sqlite import SQLiteDirectory, open_directory
from idserver.errors import ReadOnlyError
from idserver.interfaces import IPasswordHasher
from idserver.passwords import Argon2Hasher
from tests.directorycontract import (
    AuditLogContractMixin,
    ContractBase,
    DirectoryContractMixin,
    RateLimitStoreContractMixin,
)

_T = TypeVar("_T")


def get_reactor() -> IReactorFromThreads:
    """
    Return the global reactor, which trial runs.
    """
    from twisted.internet import reactor

    return cast(IReactorFromThreads, reactor)


class _SQLiteFixture(ContractBase):
    """
    Opens directories on files in the test's temporary folder.
    """

    def makeHasher(self, time_cost: int = 1) -> Argon2Hasher:
        hasher = Argon2Hasher(
            get_reactor(), time_cost=time_cost, memory_cost=8, parallelism=1
        )
        hasher.start()
        self.addCleanup(hasher.stop)
        return hasher

    def database_path(self) -> str:
        folder = self.mktemp()
        os.makedirs(folder)
        return os.path.join(folder, "idserver.sqlite3")

    def open(self, path: str, hasher: IPasswordHasher | None = None) -> SQLiteDirectory:
        directory = open_directory(
            path,
            reactor=get_reactor(),
            hasher=hasher if hasher is not None else self.makeHasher(),
            clock=self.clock,
        )
        self.addCleanup(directory.close)
        return directory

    def makeDirectory(self) -> SQLiteDirectory:
        return self.open(self.database_path())

    def makeAuditLog(self) -> SQLiteDirectory:
        return self.makeDirectory()

    def makeRateLimitStore(self) -> SQLiteDirectory:
        return self.makeDirectory()


class SQLiteDirectoryContractTests(
    _SQLiteFixture,
    DirectoryContractMixin,
    AuditLogContractMixin,
    RateLimitStoreContractMixin,
    TestCase,
):
    """
    L{SQLiteDirectory} meets the contracts of L{IDirectory}, L{IAuditLog}
    and L{IRateLimitStore}.
    """


class SQLiteDirectoryTests(_SQLiteFixture, TestCase):
    """
    Behaviour of L{SQLiteDirectory} beyond the interface contracts.
    """

    def test_file_mode(self) -> None:
        """
        A new database file and its log files are readable by the owner
        only.
        """
        path = self.database_path()
        self.open(path)
        for name in [path, path + "-wal", path + "-shm"]:
            self.assertEqual(stat.S_IMODE(os.stat(name).st_mode), 0o600, name)

    def test_existing_file_mode(self) -> None:
        """
        Opening an existing file leaves its mode alone.
        """
        path = self.database_path()
        self.open(path).close()
        os.chmod(path, 0o640)
        self.open(path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)

    async def test_pragmas(self) -> None:
        """
        The database uses write-ahead logging, and the directory's
        connection enforces foreign keys and waits five seconds for locks.
        """
        directory = self.makeDirectory()

        def pragmas(connection: sqlite3.Connection) -> tuple[str, int, int]:
            (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
            (keys,) = connection.execute("PRAGMA foreign_keys").fetchone()
            (timeout,) = connection.execute("PRAGMA busy_timeout").fetchone()
            return mode, keys, timeout

        self.assertEqual(await directory.database.run(pragmas), ("wal", 1, 5000))

    async def test_off_reactor(self) -> None:
        """
        Statements run in the database thread, not the reactor thread.
        """
        directory = self.makeDirectory()

        def where(connection: sqlite3.Connection) -> tuple[threading.Thread, bool]:
            return threading.current_thread(), isInIOThread()

        thread, in_reactor = await directory.database.run(where)
        self.assertIsNot(thread, threading.current_thread())
        self.assertFalse(in_reactor)
        self.assertIn("sqlite", thread.name)

    def test_migrations_on_new_file(self) -> None:
        """
        Opening a new file applies every migration once.
        """
        path = self.database_path()
        self.open(path).close()
        connection = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(connection.close)
        known = {migration.version for migration in find_migrations()}
        self.assertEqual(applied_versions(connection), known)
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table'"
            )
        }
        for table in [
            "users",
            "retired_usernames",
            "groups",
            "memberships",
            "settings",
            "audit_events",
            "rate_limit_failures",
            "counters",
            "schema_migrations",
        ]:
            self.assertIn(table, tables)

    async def test_reopen_keeps_data(self) -> None:
        """
        Reopening a database applies nothing again and keeps its rows.
        """
        path = self.database_path()
        first = self.open(path)
        user = await first.add_user("alice", "alice@example.com")
        first.close()
        second = self.open(path)
        self.assertEqual(await second.get_user(user.id), user)

    async def test_open_while_other_writes(self) -> None:
        """
        An up-to-date database opens while another connection holds the
        write lock, and reads work; only writes wait for the lock.
        """
        path = self.database_path()
        self.open(path).close()
        writer = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(writer.close)
        writer.execute("BEGIN IMMEDIATE")
        self.addCleanup(writer.execute, "ROLLBACK")

        directory = self.open(path)
        self.assertEqual(await directory.list_users(), [])

    async def test_sync_writes_external_groups(self) -> None:
        """
        With C{sync=True}, external groups can be renamed and their members
        changed.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("bob", "bob@example.com", source="ldap")
        group = await directory.add_group("ext", source="ldap", external_id="g-1")
        renamed = await directory.rename_group(group.id, "ext2", sync=True)
        self.assertEqual(renamed.name, "ext2")
        added = await directory.add_member(group.id, user.id, sync=True)
        self.assertEqual(added.members, (user.id,))
        removed = await directory.remove_member(group.id, user.id, sync=True)
        self.assertEqual(removed.members, ())
        with self.assertRaises(ReadOnlyError):
            await directory.rename_group(group.id, "ext3")

    async def test_delete_external_group(self) -> None:
        """
        External groups can be deleted.
        """
        directory = self.makeDirectory()
        group = await directory.add_group("ext", source="ldap", external_id="g-1")
        await directory.delete_group(group.id)
        self.assertEqual(await directory.list_groups(), [])

    async def test_group_by_external_id(self) -> None:
        """
        A synced group is found by its external id.
        """
        directory = self.makeDirectory()
        group = await directory.add_group("ext", source="ldap", external_id="g-7")
        self.assertEqual(await directory.group_by_external_id("g-7"), group)
        self.assertIsNone(await directory.group_by_external_id("g-8"))

    async def test_setting_is_stored(self) -> None:
        """
        A setting counts as stored once set, even to its default.
        """
        directory = self.makeDirectory()
        self.assertFalse(await directory.setting_is_stored("name"))
        await directory.set_setting("name", "idserver")
        self.assertTrue(await directory.setting_is_stored("name"))

    async def test_revision_ignores_logins(self) -> None:
        """
        Audit events, rate-limit counters and TOTP checks leave the revision
        alone, so caches survive logins.
        """
        directory = self.makeDirectory()
        user = await directory.add_user("carl", "carl@example.com")
        await directory.enable_totp(user.id)
        before = directory.revision()
        await directory.record("login", "success", entry_point="web")
        await directory.add_failure("user:x", 60)
        await directory.reset("user:x")
        await directory.verify_totp(user.id, "123456")
        await directory.check_password(user.id, "whatever")
        self.assertEqual(directory.revision(), before)

    async def test_rate_limit_pruning(self) -> None:
        """
        Old failures of the counted key, and failures older than a day of
        any key, are deleted.
        """
        directory = self.makeDirectory()
        await directory.add_failure("addr:192.0.2.1", 60)
        await directory.add_failure("user:a", 60)
        self.clock.advance(61)
        await directory.add_failure("user:a", 60)

        def keys(connection: sqlite3.Connection) -> list[str]:
            rows = connection.execute(
                "SELECT key FROM rate_limit_failures ORDER BY key"
            ).fetchall()
            return [row[0] for row in rows]

        self.assertEqual(
            await directory.database.run(keys), ["addr:192.0.2.1", "user:a"]
        )
        self.clock.advance(86400)
        await directory.add_failure("user:b", 60)
        self.assertEqual(await directory.database.run(keys), ["user:b"])

    async def test_audit_kind_prefix_edge(self) -> None:
        """
        A kind filter whose last character is the largest code point still
        matches by prefix.
        """
        directory = self.makeDirectory()
        await directory.record("x\U0010ffff", "success", entry_point="cli")
        await directory.record("x\U0010ffffy", "success", entry_point="cli")
        await directory.record("y", "success", entry_point="cli")
        events = await directory.events(kind="x\U0010ffff")
        self.assertEqual(len(events), 2)

    async def test_ping(self) -> None:
        """
        Ping succeeds on an open database and fails once the file is
        removed or replaced, or the directory is closed.
        """
        path = self.database_path()
        directory = self.open(path)
        await directory.ping()

        os.rename(path, path + ".moved")
        with self.assertRaises(RuntimeError):
            await directory.ping()
        # A new file at the same path, as when a backup is restored over it.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        with self.assertRaises(RuntimeError):
            await directory.ping()
        os.rename(path + ".moved", path)
        await directory.ping()

        directory.close()
        with self.assertRaises(RuntimeError):
            await directory.ping()

    async def test_closed(self) -> None:
        """
        Calls after close fail with L{RuntimeError}; closing twice is
        harmless.
        """
        directory = self.makeDirectory()
        directory.close()
        directory.close()
        with self.assertRaises(RuntimeError):
            await directory.list_users()
        self.assertEqual(directory.revision(), 0)

    async def test_revision_sees_other_connection(self) -> None:
        """
        A change made through another connection to the same file changes
        the revision.
        """
        path = self.database_path()
        daemon = self.open(path)
        cli = self.open(path)
        before = daemon.revision()
        await cli.add_user("dina", "dina@example.com")
        self.assertNotEqual(daemon.revision(), before)
        self.assertEqual(daemon.revision(), cli.revision())
        self.assertIsNotNone(await daemon.user_by_username("dina"))

    async def test_concurrent_writers(self) -> None:
        """
        Two directories on one file writing at the same time lose no write
        and hand out distinct POSIX ids.
        """
        path = self.database_path()
        hasher = self.makeHasher()
        first = self.open(path, hasher)
        second = self.open(path, hasher)
        group = await first.add_group("everyone")

        async def add_users(directory: SQLiteDirectory, prefix: str) -> None:
            for number in range(25):
                user = await directory.add_user(
                    f"{prefix}{number}", f"{prefix}{number}@example.com"
                )
                await directory.add_member(group.id, user.id)
                await directory.record("user.add", "success", entry_point="cli")

        await gatherResults(
            [
                _deferred(add_users(first, "first")),
                _deferred(add_users(second, "second")),
            ]
        )
        users = await second.list_users()
        self.assertEqual(len(users), 50)
        self.assertEqual(len({user.uid_number for user in users}), 50)
        self.assertEqual(len((await first.get_group(group.id)).members), 50)
        self.assertEqual(len(await first.events(limit=1000)), 50)

    async def test_other_process_writes(self) -> None:
        """
        Another process (like idserver-admin next to the daemon) writing the
        same file at the same time loses no write, and the revision shows
        its changes.
        """
        path = self.database_path()
        daemon = self.open(path)
        before = daemon.revision()
        script = textwrap.dedent(
            """
            import sys
            from twisted.internet import task
            from twisted.internet.defer import Deferred
            from idserver.directory.sqlite import open_directory
            from idserver.passwords import Argon2Hasher

            async def main(reactor):
                hasher = Argon2Hasher(
                    reactor, time_cost=1, memory_cost=8, parallelism=1
                )
                hasher.start()
                directory = open_directory(sys.argv[1], reactor=reactor, hasher=hasher)
                try:
                    for number in range(20):
                        await directory.add_user(
                            f"cli{number}", f"cli{number}@example.com"
                        )
                finally:
                    directory.close()
                    hasher.stop()

            task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
            """
        )
        child = getProcessOutputAndValue(
            sys.executable,
            ["-c", script, path],
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
            reactor=get_reactor(),
        )
        for number in range(20):
            await daemon.add_user(f"daemon{number}", f"daemon{number}@example.com")
        out, err, code = await child
        self.assertEqual(code, 0, err.decode("utf-8", "replace"))

        self.assertEqual(await daemon.count_users(), 40)
        self.assertEqual(await daemon.count_users(query="cli"), 20)
        self.assertNotEqual(daemon.revision(), before)


def _deferred(coroutine: Coroutine[Any, Any, _T]) -> Deferred[_T]:
    return Deferred.fromCoroutine(coroutine)


class SchemaTests(SynchronousTestCase):
    """
    Tests for the migration runner in L{idserver.directory.schema}.
    """

    def connect(self, path: str = ":memory:") -> sqlite3.Connection:
        connection = sqlite3.connect(
            path, isolation_level=None, timeout=5, check_same_thread=False
        )
        self.addCleanup(connection.close)
        return connection

    def write_migrations(self, files: dict[str, str]) -> str:
        folder = self.mktemp()
        os.makedirs(folder)
        for name, sql in files.items():
            with open(os.path.join(folder, name), "w", encoding="utf-8") as file:
                file.write(sql)
        return folder

    def test_packaged_migrations(self) -> None:
        """
        The packaged migrations start at 0001 and apply to an empty
        database, and a second run applies nothing.
        """
        migrations = find_migrations()
        self.assertEqual(migrations[0].version, 1)
        self.assertEqual(migrations[0].name, "directory")
        connection = self.connect()
        versions = [migration.version for migration in migrations]
        self.assertEqual(apply_migrations(connection), versions)
        self.assertEqual(apply_migrations(connection), [])
        self.assertEqual(applied_versions(connection), set(versions))

    def test_new_file_picked_up(self) -> None:
        """
        A migration file added later is applied by the next run, alone.
        """
        folder = self.write_migrations(
            {"0001_first.sql": "CREATE TABLE one (x INTEGER);"}
        )
        connection = self.connect()
        self.assertEqual(apply_migrations(connection, find_migrations(folder)), [1])
        with open(os.path.join(folder, "0002_second.sql"), "w") as file:
            file.write("CREATE TABLE two (y INTEGER);\nINSERT INTO two VALUES (1);")
        with open(os.path.join(folder, "README"), "w") as file:
            file.write("not a migration")
        self.assertEqual(apply_migrations(connection, find_migrations(folder)), [2])
        rows = connection.execute("SELECT y FROM two").fetchall()
        self.assertEqual(rows, [(1,)])

    def test_order_by_number(self) -> None:
        """
        Migrations are applied in the order of their numbers.
        """
        folder = self.write_migrations(
            {
                "0010_later.sql": "INSERT INTO log VALUES ('later');",
                "0002_create.sql": "CREATE TABLE log (entry TEXT);",
                "0003_early.sql": "INSERT INTO log VALUES ('early');",
            }
        )
        connection = self.connect()
        self.assertEqual(
            apply_migrations(connection, find_migrations(folder)), [2, 3, 10]
        )
        rows = connection.execute("SELECT entry FROM log ORDER BY rowid").fetchall()
        self.assertEqual(rows, [("early",), ("later",)])

    def test_duplicate_numbers(self) -> None:
        """
        Two files with the same number are an error.
        """
        folder = self.write_migrations(
            {"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 2;"}
        )
        self.assertRaises(SchemaError, find_migrations, folder)

    def test_failed_migration_rolled_back(self) -> None:
        """
        A migration that fails leaves no trace and is not recorded, and the
        migrations before it stay applied.
        """
        folder = self.write_migrations(
            {
                "0001_good.sql": "CREATE TABLE good (x INTEGER);",
                "0002_bad.sql": "CREATE TABLE half (x INTEGER);\nNOT SQL;",
            }
        )
        connection = self.connect()
        error = self.assertRaises(
            SchemaError, apply_migrations, connection, find_migrations(folder)
        )
        self.assertIn("0002_bad", str(error))
        self.assertEqual(applied_versions(connection), {1})
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table'"
            )
        }
        self.assertIn("good", tables)
        self.assertNotIn("half", tables)
        self.assertFalse(connection.in_transaction)

    def test_dangling_foreign_key(self) -> None:
        """
        A migration that leaves a dangling foreign key fails.
        """
        folder = self.write_migrations(
            {
                "0001_keys.sql": textwrap.dedent(
                    """
                    CREATE TABLE parent (id INTEGER PRIMARY KEY);
                    CREATE TABLE child (parent_id INTEGER REFERENCES parent (id));
                    INSERT INTO child VALUES (7);
                    """
                )
            }
        )
        connection = self.connect()
        self.assertRaises(
            SchemaError, apply_migrations, connection, find_migrations(folder)
        )
        self.assertEqual(applied_versions(connection), set())

    def test_unknown_version(self) -> None:
        """
        A database migrated by a newer version is rejected.
        """
        folder = self.write_migrations({"0001_a.sql": "CREATE TABLE a (x);"})
        newer = self.write_migrations(
            {"0001_a.sql": "CREATE TABLE a (x);", "0002_b.sql": "CREATE TABLE b (x);"}
        )
        connection = self.connect()
        apply_migrations(connection, find_migrations(newer))
        error = self.assertRaises(
            SchemaError, apply_migrations, connection, find_migrations(folder)
        )
        self.assertIn("0002", str(error))

    def test_requires_foreign_keys_off(self) -> None:
        """
        The runner refuses a connection that enforces foreign keys.
        """
        connection = self.connect()
        connection.execute("PRAGMA foreign_keys = ON")
        self.assertRaises(SchemaError, apply_migrations, connection)

    def test_concurrent_runs(self) -> None:
        """
        Two connections migrating the same file at the same time apply each
        migration once.
        """
        folder = self.mktemp()
        os.makedirs(folder)
        path = os.path.join(folder, "db.sqlite3")
        migrations = find_migrations()
        results: list[list[int]] = []
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def migrate() -> None:
            connection = sqlite3.connect(path, isolation_level=None, timeout=30)
            try:
                start.wait()
                results.append(apply_migrations(connection, migrations))
            except BaseException as error:
                errors.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=migrate) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(errors, [])
        applied = sorted(version for result in results for version in result)
        self.assertEqual(applied, [migration.version for migration in migrations])

    def test_split_statements(self) -> None:
        """
        Scripts are cut at semicolons that end a statement, not those inside
        strings, comments or trigger bodies.
        """
        script = textwrap.dedent(
            """
            -- a comment; with a semicolon
            CREATE TABLE t (x TEXT DEFAULT 'a;b'); CREATE TABLE u (y);
            /* block; comment */
            CREATE TRIGGER tr AFTER INSERT ON t BEGIN
                INSERT INTO u VALUES (1);
                INSERT INTO u VALUES (2);
            END;
            -- trailing comment
            """
        )
        statements = split_statements(script)
        self.assertEqual(len(statements), 3)
        self.assertTrue(statements[0].endswith("DEFAULT 'a;b');"))
        self.assertTrue(statements[1].startswith("CREATE TABLE u"))
        self.assertTrue(statements[2].endswith("END;"))

    def test_split_incomplete(self) -> None:
        """
        A statement without its final semicolon is an error.
        """
        self.assertRaises(
            SchemaError, split_statements, "CREATE TABLE a (x);\nCREATE TABLE b (y)"
        )
