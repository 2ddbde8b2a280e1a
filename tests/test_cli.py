"""
Tests for L{idserver.admin}, the C{idserver-admin} command line.

Commands run in process through L{idserver.admin.cli.run} on trial's
reactor, against a real configuration file and a real SQLite database in a
temporary directory; a few run the installed C{idserver-admin} script as a
subprocess, one of them on a pseudo-terminal so the real password prompt is
used.
"""

from __future__ import annotations

import getpass
import io
import json
import os
import stat
import sys
import textwrap
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyotp
from twisted.internet import defer, protocol
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, TestCase

from idserver.admin import cli
from idserver.admin.command import database_path
from idserver.admin.output import format_timestamp
from idserver.config import load_config
from idserver.directory.sqlite import SQLiteDirectory, open_directory
from idserver.model import User
from idserver.passwords import Argon2Hasher

# The installed console script, next to the interpreter running the tests.
SCRIPT = os.path.join(os.path.dirname(sys.executable), "idserver-admin")

CONFIG_TEMPLATE = """\
[server]
name = "Example Directory"
public_url = "https://id.example.test"
data_dir = "data"

[http]
listen = ["tcp:0:interface=127.0.0.1"]

[ldap]
listen = []

# Cheap argon2 parameters keep the tests fast.
[passwords]
time_cost = 1
memory_cost = 8
parallelism = 1
"""

ALICE_PASSWORD = "correct horse battery"

USER_FIELDS = {
    "id",
    "username",
    "email",
    "fallback_email",
    "display_name",
    "role",
    "active",
    "source",
    "totp_enabled",
    "groups",
    "created_at",
    "updated_at",
}


def get_reactor() -> Any:
    """
    Return the global reactor, which trial runs.
    """
    from twisted.internet import reactor

    return reactor


class TerminalInput(io.StringIO):
    """
    Standard input that claims to be a terminal, so the CLI prompts.
    """

    def isatty(self) -> bool:
        return True


@dataclass
class Result:
    """
    The outcome of one command line.
    """

    code: int
    stdout: str
    stderr: str
    prompts: list[str] = field(default_factory=list)

    def json(self) -> Any:
        """
        Parse standard output as exactly one JSON document.
        """
        return json.loads(self.stdout)


def parse_timestamp(value: str) -> datetime:
    """
    Parse an RFC 3339 UTC timestamp ending in C{Z}.
    """
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")


class CLITestCase(TestCase):
    """
    Base class: a configuration file in a fresh temporary directory, and
    helpers to run commands and to inspect the database they wrote.
    """

    def setUp(self) -> None:
        self.base = FilePath(self.mktemp())
        self.base.makedirs()
        self.config_path = self.base.child("idserver.toml")
        self.config_path.setContent(CONFIG_TEMPLATE.encode("utf-8"))
        self.data_dir = self.base.child("data")

    async def admin(
        self,
        *argv: str,
        stdin: str = "",
        tty: bool = False,
        passwords: Sequence[str] = (),
        config: bool = True,
    ) -> Result:
        """
        Run one command line in process.

        @param stdin: the text on standard input.
        @param tty: make standard input claim to be a terminal.
        @param passwords: the answers to password prompts, in order; an
            extra prompt gets end-of-file.
        @param config: put C{--config} with the test's file first.
        """
        answers = list(passwords)
        prompts: list[str] = []

        def prompt(text: str) -> str:
            prompts.append(text)
            if not answers:
                raise EOFError()
            return answers.pop(0)

        stdin_stream = TerminalInput(stdin) if tty else io.StringIO(stdin)
        stdout, stderr = io.StringIO(), io.StringIO()
        prefix = ["--config", self.config_path.path] if config else []
        code = await cli.run(
            get_reactor(),
            [*prefix, *argv],
            stdin_stream,
            stdout,
            stderr,
            prompt=prompt,
        )
        return Result(code, stdout.getvalue(), stderr.getvalue(), prompts)

    async def ok(self, *argv: str, **kwargs: Any) -> Result:
        """
        Run a command line that must succeed, with nothing on stderr.
        """
        result = await self.admin(*argv, **kwargs)
        self.assertEqual((result.code, result.stderr), (0, ""), result)
        return result

    async def fails(self, code: int, *argv: str, **kwargs: Any) -> Result:
        """
        Run a command line that must fail with C{code} and one error line.
        """
        result = await self.admin(*argv, **kwargs)
        self.assertEqual(result.code, code, result)
        self.assertEqual(result.stdout, "", result)
        self.assertTrue(
            result.stderr.startswith("idserver-admin: error: "), result.stderr
        )
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
        return result

    async def init(self) -> None:
        """
        Create the data directory and the database.
        """
        await self.ok("init")

    async def add_admin(self, username: str = "owner") -> None:
        """
        Add an admin without a password.
        """
        await self.ok(
            "user", "add", username, "--email", f"{username}@example.com", "--admin"
        )

    @asynccontextmanager
    async def directory(self) -> AsyncIterator[SQLiteDirectory]:
        """
        Open the database the commands wrote, as the daemon would.
        """
        config = load_config(self.config_path.path)
        hasher = Argon2Hasher(get_reactor(), time_cost=1, memory_cost=8, parallelism=1)
        hasher.start()
        directory = open_directory(
            database_path(config), reactor=get_reactor(), hasher=hasher
        )
        try:
            yield directory
        finally:
            directory.close()
            hasher.stop()

    async def stored_user(self, username: str) -> User | None:
        async with self.directory() as directory:
            return await directory.user_by_username(username)

    async def check_password(self, username: str, password: str) -> bool:
        async with self.directory() as directory:
            user = await directory.user_by_username(username)
            assert user is not None
            return await directory.check_password(user.id, password)


class InitTests(CLITestCase):
    """
    Tests for C{idserver-admin init}.
    """

    async def test_creates_data_dir_and_database(self) -> None:
        """
        init creates the data directory with mode 0700 and the database.
        """
        result = await self.ok("init")

        mode = stat.S_IMODE(os.stat(self.data_dir.path).st_mode)
        self.assertEqual(mode, 0o700)
        self.assertTrue(self.data_dir.child("idserver.sqlite3").isfile())
        self.assertIn(f"Created data directory {self.data_dir.path}", result.stdout)
        self.assertIn("Created database", result.stdout)
        self.assertIn("Stored setting name = 'Example Directory'.", result.stdout)

    async def test_stores_name_from_config(self) -> None:
        """
        init stores [server] name as the name setting.
        """
        await self.init()
        result = await self.ok("settings", "show", "--json")
        self.assertEqual(result.json()["name"], "Example Directory")

    async def test_idempotent(self) -> None:
        """
        A second init changes nothing and reports what exists.
        """
        await self.init()
        await self.add_admin()

        result = await self.ok("init")

        self.assertIn("exists", result.stdout)
        self.assertIn("already 'Example Directory'", result.stdout)
        users = (await self.ok("user", "list", "--json")).json()
        self.assertEqual([user["username"] for user in users], ["owner"])

    async def test_keeps_changed_name(self) -> None:
        """
        init does not overwrite a name set after the first init.
        """
        await self.init()
        await self.ok("settings", "set", "name", "Renamed")

        await self.ok("init")

        settings = (await self.ok("settings", "show", "--json")).json()
        self.assertEqual(settings["name"], "Renamed")

    async def test_keeps_existing_data_dir_mode(self) -> None:
        """
        init leaves the mode of an existing data directory alone.
        """
        self.data_dir.makedirs()
        # A mode an administrator might have chosen on purpose.
        os.chmod(self.data_dir.path, 0o750)  # noqa: S103

        result = await self.ok("init")

        self.assertIn(f"Data directory {self.data_dir.path} exists.", result.stdout)
        self.assertEqual(stat.S_IMODE(os.stat(self.data_dir.path).st_mode), 0o750)

    async def test_data_dir_is_a_file(self) -> None:
        """
        init fails with one line when data_dir is a file.
        """
        self.data_dir.setContent(b"")
        await self.fails(1, "init")

    async def test_audited(self) -> None:
        """
        init is recorded in the audit log.
        """
        await self.init()
        async with self.directory() as directory:
            events = await directory.events(kind="server.init")
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0].entry_point, "cli")
        self.assertEqual(events[0].outcome, "success")

    async def test_commands_need_database(self) -> None:
        """
        Before init, commands fail and create neither the directory nor the
        database.
        """
        result = await self.fails(1, "user", "list")
        self.assertIn(
            "does not exist; create it with 'idserver-admin init'", result.stderr
        )
        self.assertFalse(self.data_dir.exists())

    async def test_database_unreachable(self) -> None:
        """
        A database path that exists but cannot be reached is reported with
        the system's reason, not as a database that init would create.
        """
        self.data_dir.makedirs()
        database = self.data_dir.child("idserver.sqlite3")
        os.symlink(database.path, database.path)

        result = await self.fails(1, "user", "list")

        self.assertIn(
            f"Too many levels of symbolic links: {database.path}", result.stderr
        )
        self.assertNotIn("init", result.stderr)

    async def test_database_not_permitted(self) -> None:
        """
        A data directory the user may not enter is reported as a permission
        problem.
        """
        if os.getuid() == 0:
            raise SkipTest("root may enter any directory")
        await self.init()
        self.data_dir.chmod(0)
        self.addCleanup(self.data_dir.chmod, 0o700)

        result = await self.fails(1, "user", "list")

        self.assertIn("Permission denied", result.stderr)
        self.assertNotIn("init", result.stderr)


class ConfigTests(CLITestCase):
    """
    Tests for finding and reading the configuration file.
    """

    async def test_missing_file(self) -> None:
        """
        A missing configuration file is a usage error.
        """
        result = await self.fails(
            2,
            "--config",
            self.base.child("nope.toml").path,
            "user",
            "list",
            config=False,
        )
        self.assertIn("nope.toml", result.stderr)

    async def test_invalid_file(self) -> None:
        """
        An invalid configuration file is a usage error naming the key.
        """
        self.config_path.setContent(
            b'[server]\npublic_url = "https://x.test"\nbogus = 1\n'
        )
        result = await self.fails(2, "user", "list")
        self.assertIn("server.bogus", result.stderr)

    async def test_environment_variable(self) -> None:
        """
        Without --config, IDSERVER_CONFIG names the file.
        """
        self.patch(
            os, "environ", {**os.environ, "IDSERVER_CONFIG": self.config_path.path}
        )
        result = await self.admin("init", config=False)
        self.assertEqual(result.code, 0, result)
        self.assertTrue(self.data_dir.child("idserver.sqlite3").isfile())

    async def test_option_after_command(self) -> None:
        """
        --config is an option of the program, not of the commands.
        """
        await self.fails(
            2, "user", "list", "--config", self.config_path.path, config=False
        )


class UsageTests(CLITestCase):
    """
    Tests for argument errors and help.
    """

    async def test_help(self) -> None:
        """
        --help prints the commands to stdout and exits 0.
        """
        result = await self.admin("--help")
        self.assertEqual(result.code, 0)
        for command in ("init", "user", "group", "settings"):
            self.assertIn(command, result.stdout)

    async def test_subcommand_help(self) -> None:
        """
        user add --help documents --password-stdin and not --password.
        """
        result = await self.admin("user", "add", "--help")
        self.assertEqual(result.code, 0)
        self.assertIn("--password-stdin", result.stdout)
        self.assertNotIn("--password ", result.stdout)

    def test_main_usage_error(self) -> None:
        """
        main() returns 2 for a usage error without starting the reactor.
        """
        stdout, stderr = io.StringIO(), io.StringIO()
        code = cli.main(["user", "add"], io.StringIO(), stdout, stderr)
        self.assertEqual(code, 2)
        self.assertEqual(stdout.getvalue(), "")
        self.assertTrue(stderr.getvalue().startswith("idserver-admin: error: "))

    def test_main_help(self) -> None:
        """
        main() prints help to the given stdout and returns 0.
        """
        stdout, stderr = io.StringIO(), io.StringIO()
        code = cli.main(["settings", "--help"], io.StringIO(), stdout, stderr)
        self.assertEqual((code, stderr.getvalue()), (0, ""))
        self.assertIn("usage: idserver-admin settings", stdout.getvalue())

    async def test_no_command(self) -> None:
        """
        A missing command is a usage error.
        """
        await self.fails(2)
        await self.fails(2, "user")

    async def test_unknown_command(self) -> None:
        """
        An unknown command is a usage error.
        """
        result = await self.fails(2, "user", "frobnicate")
        self.assertIn("frobnicate", result.stderr)

    async def test_missing_argument(self) -> None:
        """
        A missing required option is a usage error naming it.
        """
        await self.init()
        result = await self.fails(2, "user", "add", "bob")
        self.assertIn("--email", result.stderr)

    async def test_argument_not_utf8(self) -> None:
        """
        An argument that was not UTF-8 (decoded to lone surrogates) is a
        usage error naming its position, for lookups and changes alike.
        """
        await self.init()
        cases = [
            ("user", "show", "b\udce4b"),
            ("user", "add", "bob", "--email", "b\udce4b@example.com"),
            ("settings", "set", "name", "N\udce4me"),
        ]
        for argv in cases:
            result = await self.fails(2, *argv)
            self.assertIn(f"argument {len(argv) + 2} is not valid UTF-8", result.stderr)
        settings = (await self.ok("settings", "show", "--json")).json()
        self.assertEqual(settings["name"], "Example Directory")

    async def test_no_abbreviations(self) -> None:
        """
        Abbreviated options are not accepted.
        """
        await self.init()
        await self.fails(2, "user", "add", "bob", "--em", "bob@example.com")


class UserAddTests(CLITestCase):
    """
    Tests for C{idserver-admin user add}.
    """

    async def test_alice(self) -> None:
        """
        A user added with a mixed-case email shows with the lower-cased email
        and every JSON field, looked up by username in any case.
        """
        await self.init()
        await self.ok(
            "user",
            "add",
            "alice",
            "--email",
            "Alice@Example.com",
            "--name",
            "Alice Liddell",
            "--password-stdin",
            stdin=ALICE_PASSWORD + "\n",
        )

        shown = (await self.ok("user", "show", "ALICE", "--json")).json()

        self.assertEqual(set(shown), USER_FIELDS)
        self.assertTrue(shown["id"].startswith("uid-"))
        self.assertEqual(shown["username"], "alice")
        self.assertEqual(shown["email"], "alice@example.com")
        self.assertIsNone(shown["fallback_email"])
        self.assertEqual(shown["display_name"], "Alice Liddell")
        self.assertEqual(shown["role"], "user")
        self.assertIs(shown["active"], True)
        self.assertEqual(shown["source"], "local")
        self.assertIs(shown["totp_enabled"], False)
        self.assertEqual(shown["groups"], [])
        for key in ("created_at", "updated_at"):
            self.assertTrue(shown[key].endswith("Z"), shown[key])
            parse_timestamp(shown[key])
        self.assertTrue(await self.check_password("alice", ALICE_PASSWORD))

    async def test_json(self) -> None:
        """
        user add --json prints the new user.
        """
        await self.init()
        result = await self.ok(
            "user",
            "add",
            "bob",
            "--email",
            "bob@example.com",
            "--fallback-email",
            "Bob@Home.example",
            "--admin",
            "--json",
        )
        user = result.json()
        self.assertEqual(set(user), USER_FIELDS)
        self.assertEqual(user["role"], "admin")
        self.assertEqual(user["fallback_email"], "bob@home.example")

    async def test_text(self) -> None:
        """
        Without --json, user add confirms in one line and reports when the user
        has no password.
        """
        await self.init()
        result = await self.ok("user", "add", "bob", "--email", "bob@example.com")
        self.assertIn("Added user bob (uid-", result.stdout)
        self.assertIn("set-password bob", result.stdout)

    async def test_without_terminal_no_password(self) -> None:
        """
        Without a terminal and without --password-stdin, the user is created
        without a password and nothing is read.
        """
        await self.init()
        result = await self.ok(
            "user", "add", "bob", "--email", "bob@example.com", stdin="ignored\n"
        )
        self.assertEqual(result.prompts, [])
        user = await self.stored_user("bob")
        assert user is not None
        self.assertFalse(user.has_password)

    async def test_prompt(self) -> None:
        """
        On a terminal, user add prompts twice and stores a matching password.
        """
        await self.init()
        result = await self.ok(
            "user",
            "add",
            "bob",
            "--email",
            "bob@example.com",
            tty=True,
            passwords=["s3cret-pass", "s3cret-pass"],
        )
        self.assertEqual(len(result.prompts), 2)
        self.assertIn("bob", result.prompts[0])
        self.assertTrue(await self.check_password("bob", "s3cret-pass"))

    async def test_prompt_mismatch(self) -> None:
        """
        Two different passwords at the prompt fail and create nothing.
        """
        await self.init()
        result = await self.fails(
            1,
            "user",
            "add",
            "bob",
            "--email",
            "bob@example.com",
            tty=True,
            passwords=["s3cret-pass", "s3cret-pasz"],
        )
        self.assertIn("do not match", result.stderr)
        self.assertIsNone(await self.stored_user("bob"))

    async def test_prompt_empty(self) -> None:
        """
        An empty first entry at the prompt creates the user without a
        password.
        """
        await self.init()
        result = await self.ok(
            "user", "add", "bob", "--email", "bob@example.com", tty=True, passwords=[""]
        )
        self.assertEqual(len(result.prompts), 1)
        user = await self.stored_user("bob")
        assert user is not None
        self.assertFalse(user.has_password)

    async def test_prompt_end_of_file(self) -> None:
        """
        End of input at the second prompt fails and creates nothing.
        """
        await self.init()
        await self.fails(
            1,
            "user",
            "add",
            "bob",
            "--email",
            "bob@example.com",
            tty=True,
            passwords=["s3cret-pass"],
        )
        self.assertIsNone(await self.stored_user("bob"))

    async def test_password_stdin_strips_newline(self) -> None:
        """
        --password-stdin reads one line and strips its line ending only.
        """
        await self.init()
        await self.ok(
            "user",
            "add",
            "bob",
            "--email",
            "bob@example.com",
            "--password-stdin",
            stdin=" spaced pass \r\nsecond line\n",
        )
        self.assertTrue(await self.check_password("bob", " spaced pass "))
        self.assertFalse(await self.check_password("bob", " spaced pass \r"))

    async def test_password_stdin_without_newline(self) -> None:
        """
        --password-stdin accepts a password without a final newline.
        """
        await self.init()
        await self.ok(
            "user",
            "add",
            "bob",
            "--email",
            "bob@example.com",
            "--password-stdin",
            stdin="no-newline-pass",
        )
        self.assertTrue(await self.check_password("bob", "no-newline-pass"))

    async def test_password_stdin_empty(self) -> None:
        """
        --password-stdin with nothing on standard input fails and creates
        nothing.
        """
        await self.init()
        for stdin in ("", "\n"):
            result = await self.fails(
                1,
                "user",
                "add",
                "bob",
                "--email",
                "bob@example.com",
                "--password-stdin",
                stdin=stdin,
            )
            self.assertIn("password", result.stderr)
        self.assertIsNone(await self.stored_user("bob"))

    async def test_password_too_short(self) -> None:
        """
        A password that breaks the rules fails and creates nothing.
        """
        await self.init()
        for password in ("short", "bob-the-user"):
            await self.fails(
                1,
                "user",
                "add",
                "bob-the-user",
                "--email",
                "bob@example.com",
                "--password-stdin",
                stdin=password + "\n",
            )
        self.assertIsNone(await self.stored_user("bob-the-user"))

    async def test_password_argument_rejected(self) -> None:
        """
        A password given as an argument is a usage error, in either form, and
        nothing is created.
        """
        await self.init()
        for argv in (["--password", "s3cret-pass"], ["--password=s3cret-pass"]):
            result = await self.fails(
                2, "user", "add", "bob", "--email", "bob@example.com", *argv
            )
            self.assertIn("not accepted as arguments", result.stderr)
            self.assertNotIn("s3cret-pass", result.stderr)
        self.assertIsNone(await self.stored_user("bob"))

    async def test_unrecognized_values_hidden(self) -> None:
        """
        Unrecognized arguments are named by their option only, so a password
        typed in the wrong place is not echoed.
        """
        await self.init()
        result = await self.fails(
            2, "user", "list", "--pass", "hunter22-secret", "--colour=hunter33"
        )
        self.assertIn("unrecognized arguments: --pass --colour", result.stderr)
        self.assertIn("1 other value(s), not shown", result.stderr)
        self.assertNotIn("hunter22", result.stderr)
        self.assertNotIn("hunter33", result.stderr)

    async def test_password_positional_rejected(self) -> None:
        """
        An extra argument after the username is a usage error.
        """
        await self.init()
        await self.fails(
            2, "user", "add", "bob", "s3cret-pass", "--email", "bob@example.com"
        )
        self.assertIsNone(await self.stored_user("bob"))

    async def test_invalid_username(self) -> None:
        """
        Invalid usernames fail before any prompt.
        """
        await self.init()
        for username in ("-bob", "_bob", "bob smith", "bø", "a" * 65, ""):
            # "--" lets argparse take "-bob" as the username.
            result = await self.fails(
                1,
                "user",
                "add",
                "--email",
                "bob@example.com",
                "--",
                username,
                tty=True,
                passwords=["s3cret-pass", "s3cret-pass"],
            )
            self.assertEqual(result.prompts, [])
        users = (await self.ok("user", "list", "--json")).json()
        self.assertEqual(users, [])

    async def test_reserved_username(self) -> None:
        """
        Reserved usernames are rejected in any case.
        """
        await self.init()
        for username in ("admin", "Root", "postmaster", "no-reply", "ADMINS"):
            result = await self.fails(
                1, "user", "add", username, "--email", "x@example.com"
            )
            self.assertIn("reserved", result.stderr)

    async def test_invalid_email(self) -> None:
        """
        Invalid email and fallback email addresses are rejected.
        """
        await self.init()
        await self.fails(1, "user", "add", "bob", "--email", "not-an-address")
        await self.fails(
            1,
            "user",
            "add",
            "bob",
            "--email",
            "bob@example.com",
            "--fallback-email",
            "nope",
        )
        self.assertIsNone(await self.stored_user("bob"))

    async def test_duplicate_username(self) -> None:
        """
        A username taken in any case is a conflict.
        """
        await self.init()
        await self.ok("user", "add", "bob", "--email", "bob@example.com")
        await self.fails(1, "user", "add", "BOB", "--email", "other@example.com")
        async with self.directory() as directory:
            self.assertIsNone(await directory.user_by_email("other@example.com"))

    async def test_duplicate_email(self) -> None:
        """
        An email taken in any case is a conflict.
        """
        await self.init()
        await self.ok("user", "add", "bob", "--email", "bob@example.com")
        await self.fails(1, "user", "add", "robert", "--email", "BOB@example.COM")
        self.assertIsNone(await self.stored_user("robert"))

    async def test_deleted_username_retired(self) -> None:
        """
        The username of a deleted user cannot be given to a new user.
        """
        await self.init()
        await self.add_admin()
        await self.ok("user", "add", "bob", "--email", "bob@example.com")
        await self.ok("user", "delete", "bob")
        await self.fails(1, "user", "add", "bob", "--email", "bob2@example.com")

    async def test_audited_without_secret(self) -> None:
        """
        user add is recorded with the OS user as actor and no password in
        the detail; a failed add is recorded as a failure.
        """
        await self.init()
        await self.ok(
            "user",
            "add",
            "bob",
            "--email",
            "bob@example.com",
            "--password-stdin",
            stdin="s3cret-pass\n",
        )
        await self.fails(1, "user", "add", "bob", "--email", "b2@example.com")

        async with self.directory() as directory:
            events = await directory.events(kind="user.add")
        self.assertEqual([event.outcome for event in events], ["failure", "success"])
        for event in events:
            self.assertEqual(event.entry_point, "cli")
            self.assertEqual(event.actor, f"os:{getpass.getuser()}")
            self.assertEqual(event.subject, "bob")
            self.assertNotIn("s3cret-pass", event.detail)


class UserSetTests(CLITestCase):
    """
    Tests for C{idserver-admin user set}.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        super().setUp()
        await self.init()
        await self.add_admin()
        await self.ok("user", "add", "bob", "--email", "bob@example.com")

    async def test_changes_fields(self) -> None:
        """
        user set changes email, fallback email, name and role.
        """
        result = await self.ok(
            "user",
            "set",
            "Bob",
            "--email",
            "Robert@Example.com",
            "--fallback-email",
            "bob@home.example",
            "--name",
            "Robert Smith",
            "--role",
            "admin",
            "--json",
        )
        user = result.json()
        self.assertEqual(user["email"], "robert@example.com")
        self.assertEqual(user["fallback_email"], "bob@home.example")
        self.assertEqual(user["display_name"], "Robert Smith")
        self.assertEqual(user["role"], "admin")
        shown = (await self.ok("user", "show", "bob", "--json")).json()
        self.assertEqual(shown, user)

    async def test_clear_fallback_email(self) -> None:
        """
        An empty --fallback-email removes it.
        """
        await self.ok("user", "set", "bob", "--fallback-email", "bob@home.example")
        await self.ok("user", "set", "bob", "--fallback-email", "")
        shown = (await self.ok("user", "show", "bob", "--json")).json()
        self.assertIsNone(shown["fallback_email"])

    async def test_text(self) -> None:
        """
        Without --json, user set reports what changed.
        """
        result = await self.ok("user", "set", "bob", "--name", "Bob")
        self.assertEqual(result.stdout, "Updated user bob: changed display name.\n")

    async def test_nothing_to_change(self) -> None:
        """
        user set without a change is a usage error.
        """
        await self.fails(2, "user", "set", "bob")

    async def test_bad_role(self) -> None:
        """
        A role other than admin or user is a usage error.
        """
        await self.fails(2, "user", "set", "bob", "--role", "superuser")

    async def test_email_conflict(self) -> None:
        """
        An email of another user is a conflict and nothing changes.
        """
        await self.fails(
            1, "user", "set", "bob", "--email", "OWNER@example.com", "--name", "X"
        )
        shown = (await self.ok("user", "show", "bob", "--json")).json()
        self.assertEqual(shown["email"], "bob@example.com")
        self.assertEqual(shown["display_name"], "")

    async def test_unknown_user(self) -> None:
        """
        An unknown username fails with one line.
        """
        result = await self.fails(1, "user", "set", "carol", "--name", "C")
        self.assertIn("'carol'", result.stderr)

    async def test_demote_last_admin(self) -> None:
        """
        The last active admin cannot be demoted.
        """
        await self.fails(1, "user", "set", "owner", "--role", "user")
        shown = (await self.ok("user", "show", "owner", "--json")).json()
        self.assertEqual(shown["role"], "admin")

    async def test_demote_second_admin(self) -> None:
        """
        An admin can be demoted while another active admin remains.
        """
        await self.ok("user", "set", "bob", "--role", "admin")
        await self.ok("user", "set", "owner", "--role", "user")


class ExternalUserTests(CLITestCase):
    """
    Tests for commands on users that come from the external directory.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        super().setUp()
        await self.init()
        async with self.directory() as directory:
            await directory.add_user(
                "ext", "ext@example.com", source="ldap", external_id="ext-1"
            )

    async def test_email_and_name_read_only(self) -> None:
        """
        The email and display name of an external user cannot be set.
        """
        for option in ("--email", "--name"):
            result = await self.fails(1, "user", "set", "ext", option, "x@example.org")
            self.assertIn("external directory", result.stderr)
        shown = (await self.ok("user", "show", "ext", "--json")).json()
        self.assertEqual(shown["email"], "ext@example.com")
        self.assertEqual(shown["source"], "ldap")

    async def test_role_and_fallback_local(self) -> None:
        """
        The role and fallback email of an external user stay local.
        """
        user = (
            await self.ok(
                "user",
                "set",
                "ext",
                "--role",
                "admin",
                "--fallback-email",
                "ext@home.example",
                "--json",
            )
        ).json()
        self.assertEqual(user["role"], "admin")
        self.assertEqual(user["fallback_email"], "ext@home.example")


class UserPasswordTests(CLITestCase):
    """
    Tests for C{idserver-admin user set-password}.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        super().setUp()
        await self.init()
        await self.ok("user", "add", "bob", "--email", "bob@example.com")

    async def test_stdin(self) -> None:
        """
        set-password --password-stdin stores the password.
        """
        result = await self.ok(
            "user", "set-password", "BOB", "--password-stdin", stdin="n3w-password\n"
        )
        self.assertEqual(result.stdout, "Set the password of bob.\n")
        self.assertTrue(await self.check_password("bob", "n3w-password"))

    async def test_stdin_not_utf8(self) -> None:
        """
        A password from standard input that was not UTF-8 fails with one
        line that does not show it, and changes nothing.
        """
        result = await self.fails(
            1,
            "user",
            "set-password",
            "bob",
            "--password-stdin",
            stdin="p\udce4ssword123\n",
        )
        self.assertIn("not UTF-8", result.stderr)
        self.assertNotIn("ssword123", result.stderr)
        self.assertFalse((await self.stored_user("bob")).has_password)

    async def test_prompt(self) -> None:
        """
        set-password on a terminal prompts twice.
        """
        result = await self.ok(
            "user",
            "set-password",
            "bob",
            tty=True,
            passwords=["n3w-password", "n3w-password"],
        )
        self.assertEqual(len(result.prompts), 2)
        self.assertTrue(await self.check_password("bob", "n3w-password"))

    async def test_prompt_mismatch(self) -> None:
        """
        Different entries at the prompt fail and change nothing.
        """
        await self.ok(
            "user", "set-password", "bob", "--password-stdin", stdin="old-password\n"
        )
        result = await self.fails(
            1,
            "user",
            "set-password",
            "bob",
            tty=True,
            passwords=["n3w-password", "n3w-passwort"],
        )
        self.assertIn("do not match", result.stderr)
        self.assertTrue(await self.check_password("bob", "old-password"))

    async def test_prompt_empty(self) -> None:
        """
        An empty entry at the prompt fails: set-password needs a password.
        """
        await self.fails(1, "user", "set-password", "bob", tty=True, passwords=[""])

    async def test_no_terminal(self) -> None:
        """
        Without a terminal and without --password-stdin, set-password fails
        and reads nothing.
        """
        result = await self.fails(1, "user", "set-password", "bob", stdin="x\n")
        self.assertIn("--password-stdin", result.stderr)
        self.assertEqual(result.prompts, [])

    async def test_argument_rejected(self) -> None:
        """
        set-password rejects --password.
        """
        await self.fails(2, "user", "set-password", "bob", "--password", "n3w-password")
        user = await self.stored_user("bob")
        assert user is not None
        self.assertFalse(user.has_password)

    async def test_invalid_password(self) -> None:
        """
        A too short password fails.
        """
        await self.fails(
            1, "user", "set-password", "bob", "--password-stdin", stdin="short\n"
        )

    async def test_unknown_user(self) -> None:
        """
        An unknown user fails before any prompt.
        """
        result = await self.fails(
            1,
            "user",
            "set-password",
            "carol",
            "--password-stdin",
            stdin="n3w-password\n",
        )
        self.assertIn("'carol'", result.stderr)

    async def test_audited(self) -> None:
        """
        set-password is recorded without the password.
        """
        await self.ok(
            "user", "set-password", "bob", "--password-stdin", stdin="n3w-password\n"
        )
        async with self.directory() as directory:
            events = await directory.events(kind="user.password")
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0].subject, "bob")
        self.assertNotIn("n3w-password", events[0].detail)


class UserListShowTests(CLITestCase):
    """
    Tests for C{idserver-admin user list} and C{user show}.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        super().setUp()
        await self.init()
        await self.add_admin()
        await self.ok(
            "user", "add", "bob", "--email", "bob@example.com", "--name", "Bob B"
        )
        await self.ok("group", "add", "staff")
        await self.ok("group", "add-member", "staff", "bob")

    async def test_list_json(self) -> None:
        """
        user list --json prints one array of user objects ordered by
        username.
        """
        users = (await self.ok("user", "list", "--json")).json()
        self.assertEqual([user["username"] for user in users], ["bob", "owner"])
        for user in users:
            self.assertEqual(set(user), USER_FIELDS)

    async def test_list_text(self) -> None:
        """
        user list prints a table with a header.
        """
        lines = (await self.ok("user", "list")).stdout.splitlines()
        self.assertEqual(lines[0].split()[:4], ["USERNAME", "ROLE", "ACTIVE", "2FA"])
        self.assertEqual(lines[1].split()[:2], ["bob", "user"])
        self.assertEqual(lines[2].split()[:2], ["owner", "admin"])

    async def test_list_empty(self) -> None:
        """
        user list --json on a fresh database is an empty array.
        """
        self.config_path.setContent(
            CONFIG_TEMPLATE.replace('"data"', '"other"').encode("utf-8")
        )
        await self.init()
        self.assertEqual((await self.ok("user", "list", "--json")).json(), [])

    async def test_show_groups(self) -> None:
        """
        user show lists the user's group names.
        """
        shown = (await self.ok("user", "show", "bob", "--json")).json()
        self.assertEqual(shown["groups"], ["staff"])

    async def test_show_text(self) -> None:
        """
        user show prints aligned key: value lines.
        """
        text = (await self.ok("user", "show", "bob")).stdout
        self.assertIn("username:", text)
        self.assertRegex(text, r"(?m)^display_name: +Bob B$")
        self.assertRegex(text, r"(?m)^password: +not set$")

    async def test_show_unknown(self) -> None:
        """
        user show of an unknown user fails with one line.
        """
        result = await self.fails(1, "user", "show", "carol", "--json")
        self.assertEqual(
            result.stderr, "idserver-admin: error: There is no user named 'carol'.\n"
        )

    async def test_show_by_email_not_accepted(self) -> None:
        """
        user show takes a username, not an email address.
        """
        await self.fails(1, "user", "show", "bob@example.com")

    async def test_timestamps_match_database(self) -> None:
        """
        The JSON timestamps are the stored times in UTC.
        """
        shown = (await self.ok("user", "show", "bob", "--json")).json()
        user = await self.stored_user("bob")
        assert user is not None
        self.assertEqual(shown["created_at"], format_timestamp(user.created_at))
        self.assertEqual(shown["updated_at"], format_timestamp(user.updated_at))


class UserStateTests(CLITestCase):
    """
    Tests for C{idserver-admin user disable}, C{enable} and C{delete}.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        super().setUp()
        await self.init()
        await self.add_admin()
        await self.ok("user", "add", "bob", "--email", "bob@example.com")

    async def active(self, username: str) -> bool:
        return bool(
            (await self.ok("user", "show", username, "--json")).json()["active"]
        )

    async def test_disable_enable(self) -> None:
        """
        disable and enable switch the active flag.
        """
        result = await self.ok("user", "disable", "bob")
        self.assertEqual(result.stdout, "Disabled user bob.\n")
        self.assertFalse(await self.active("bob"))
        result = await self.ok("user", "enable", "BOB")
        self.assertEqual(result.stdout, "Enabled user bob.\n")
        self.assertTrue(await self.active("bob"))

    async def test_disable_last_admin(self) -> None:
        """
        The last active admin cannot be disabled.
        """
        await self.fails(1, "user", "disable", "owner")
        self.assertTrue(await self.active("owner"))

    async def test_delete(self) -> None:
        """
        delete removes the user and its memberships.
        """
        await self.ok("group", "add", "staff")
        await self.ok("group", "add-member", "staff", "bob")

        result = await self.ok("user", "delete", "bob")

        self.assertIn("Deleted user bob", result.stdout)
        self.assertIsNone(await self.stored_user("bob"))
        group = (await self.ok("group", "show", "staff", "--json")).json()
        self.assertEqual(group["members"], [])

    async def test_delete_last_admin(self) -> None:
        """
        The last active admin cannot be deleted.
        """
        result = await self.fails(1, "user", "delete", "owner")
        self.assertIsNotNone(await self.stored_user("owner"))
        async with self.directory() as directory:
            events = await directory.events(kind="user.delete")
        self.assertEqual([event.outcome for event in events], ["failure"])
        self.assertEqual(events[0].detail, result.stderr.split("error: ", 1)[1].strip())

    async def test_unknown_user(self) -> None:
        """
        disable, enable and delete of an unknown user fail.
        """
        for command in ("disable", "enable", "delete"):
            await self.fails(1, "user", command, "carol")


class UserTOTPTests(CLITestCase):
    """
    Tests for C{idserver-admin user totp-enroll} and C{totp-disable}.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        super().setUp()
        await self.init()
        await self.ok("user", "add", "bob", "--email", "bob@example.com")

    async def test_enroll_json(self) -> None:
        """
        totp-enroll --json prints the secret and its otpauth URI, and 2FA is
        on at once with that secret.
        """
        enrolled = (await self.ok("user", "totp-enroll", "bob", "--json")).json()

        self.assertEqual(set(enrolled), {"secret", "uri"})
        totp = pyotp.parse_uri(enrolled["uri"])
        self.assertEqual(totp.secret, enrolled["secret"])
        self.assertEqual(totp.issuer, "Example Directory")
        self.assertEqual(totp.name, "bob")
        shown = (await self.ok("user", "show", "bob", "--json")).json()
        self.assertIs(shown["totp_enabled"], True)
        async with self.directory() as directory:
            user = await directory.user_by_username("bob")
            assert user is not None
            code = pyotp.TOTP(enrolled["secret"]).now()
            self.assertTrue(await directory.verify_totp(user.id, code))

    async def test_enroll_text(self) -> None:
        """
        totp-enroll prints the secret and the URI on their own lines.
        """
        text = (await self.ok("user", "totp-enroll", "bob")).stdout
        self.assertIn("secret:", text)
        self.assertIn("uri:", text)
        self.assertIn("otpauth://totp/", text)

    async def test_enroll_audited_without_secret(self) -> None:
        """
        totp-enroll is recorded without the secret.
        """
        secret = (await self.ok("user", "totp-enroll", "bob", "--json")).json()[
            "secret"
        ]
        async with self.directory() as directory:
            events = await directory.events(kind="user.totp_enroll")
        self.assertEqual(len(events), 1)
        self.assertNotIn(secret, events[0].detail)

    async def test_disable(self) -> None:
        """
        totp-disable turns 2FA off.
        """
        await self.ok("user", "totp-enroll", "bob")
        result = await self.ok("user", "totp-disable", "bob")
        self.assertEqual(result.stdout, "2FA is now off for bob.\n")
        shown = (await self.ok("user", "show", "bob", "--json")).json()
        self.assertIs(shown["totp_enabled"], False)

    async def test_unknown_user(self) -> None:
        """
        totp commands on an unknown user fail.
        """
        await self.fails(1, "user", "totp-enroll", "carol", "--json")
        await self.fails(1, "user", "totp-disable", "carol")


class GroupTests(CLITestCase):
    """
    Tests for C{idserver-admin group ...}.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        super().setUp()
        await self.init()
        await self.ok("user", "add", "bob", "--email", "bob@example.com")
        await self.ok("user", "add", "carol", "--email", "carol@example.com")

    async def test_add_json(self) -> None:
        """
        group add --json prints the group in its JSON shape.
        """
        group = (await self.ok("group", "add", "Staff", "--json")).json()
        self.assertEqual(set(group), {"id", "name", "source", "members"})
        self.assertTrue(group["id"].startswith("gid-"))
        self.assertEqual(group["name"], "staff")
        self.assertEqual(group["source"], "local")
        self.assertEqual(group["members"], [])

    async def test_add_invalid(self) -> None:
        """
        Invalid group names fail.
        """
        for name in ("-staff", "sta ff", "x" * 65, ""):
            await self.fails(1, "group", "add", "--", name)
        self.assertEqual((await self.ok("group", "list", "--json")).json(), [])

    async def test_add_duplicate(self) -> None:
        """
        A group name taken in any case is a conflict.
        """
        await self.ok("group", "add", "staff")
        await self.fails(1, "group", "add", "STAFF")

    async def test_members(self) -> None:
        """
        add-member and remove-member change the members, listed by username.
        """
        await self.ok("group", "add", "staff")
        await self.ok("group", "add-member", "staff", "Carol")
        group = (await self.ok("group", "add-member", "STAFF", "bob", "--json")).json()
        self.assertEqual(group["members"], ["bob", "carol"])

        # Adding an existing member changes nothing.
        group = (await self.ok("group", "add-member", "staff", "bob", "--json")).json()
        self.assertEqual(group["members"], ["bob", "carol"])

        result = await self.ok("group", "remove-member", "staff", "bob")
        self.assertEqual(result.stdout, "Removed bob from group staff.\n")
        group = (await self.ok("group", "show", "staff", "--json")).json()
        self.assertEqual(group["members"], ["carol"])

    async def test_member_unknown(self) -> None:
        """
        Membership changes with an unknown group or user fail with one line.
        """
        await self.ok("group", "add", "staff")
        result = await self.fails(1, "group", "add-member", "nobody", "bob")
        self.assertIn("There is no group named 'nobody'.", result.stderr)
        result = await self.fails(1, "group", "add-member", "staff", "dave")
        self.assertIn("There is no user named 'dave'.", result.stderr)
        await self.fails(1, "group", "remove-member", "nobody", "bob")
        await self.fails(1, "group", "remove-member", "staff", "dave")

    async def test_rename(self) -> None:
        """
        group rename changes the name and keeps id and members.
        """
        added = (await self.ok("group", "add", "staff", "--json")).json()
        await self.ok("group", "add-member", "staff", "bob")

        renamed = (await self.ok("group", "rename", "staff", "Team", "--json")).json()

        self.assertEqual(renamed["id"], added["id"])
        self.assertEqual(renamed["name"], "team")
        self.assertEqual(renamed["members"], ["bob"])
        await self.fails(1, "group", "show", "staff")

    async def test_rename_errors(self) -> None:
        """
        Renaming an unknown group, to an invalid name or to a taken name
        fails.
        """
        await self.ok("group", "add", "staff")
        await self.ok("group", "add", "team")
        await self.fails(1, "group", "rename", "nobody", "other")
        await self.fails(1, "group", "rename", "staff", "bad name")
        await self.fails(1, "group", "rename", "staff", "TEAM")
        names = [g["name"] for g in (await self.ok("group", "list", "--json")).json()]
        self.assertEqual(names, ["staff", "team"])

    async def test_delete(self) -> None:
        """
        group delete removes the group; an unknown group fails.
        """
        await self.ok("group", "add", "staff")
        await self.ok("group", "add-member", "staff", "bob")
        result = await self.ok("group", "delete", "Staff")
        self.assertEqual(result.stdout, "Deleted group staff.\n")
        self.assertEqual((await self.ok("group", "list", "--json")).json(), [])
        shown = (await self.ok("user", "show", "bob", "--json")).json()
        self.assertEqual(shown["groups"], [])
        await self.fails(1, "group", "delete", "staff")

    async def test_list(self) -> None:
        """
        group list prints groups ordered by name, as JSON or a table.
        """
        await self.ok("group", "add", "team")
        await self.ok("group", "add", "staff")
        await self.ok("group", "add-member", "staff", "bob")

        groups = (await self.ok("group", "list", "--json")).json()
        self.assertEqual(
            [(g["name"], g["members"]) for g in groups],
            [("staff", ["bob"]), ("team", [])],
        )
        lines = (await self.ok("group", "list")).stdout.splitlines()
        self.assertEqual(lines[0].split(), ["NAME", "SOURCE", "MEMBERS"])
        self.assertEqual(lines[1].split(), ["staff", "local", "bob"])
        self.assertEqual(lines[2].split(), ["team", "local", "-"])

    async def test_audited(self) -> None:
        """
        Group changes are recorded in the audit log.
        """
        await self.ok("group", "add", "staff")
        await self.ok("group", "add-member", "staff", "bob")
        await self.ok("group", "rename", "staff", "team")
        async with self.directory() as directory:
            events = await directory.events(kind="group.")
        self.assertEqual(
            [(e.kind, e.subject) for e in events],
            [
                ("group.rename", "staff"),
                ("group.add_member", "staff"),
                ("group.add", "staff"),
            ],
        )


class SettingsTests(CLITestCase):
    """
    Tests for C{idserver-admin settings ...}.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        super().setUp()
        await self.init()

    async def test_show_json(self) -> None:
        """
        settings show --json prints one object with JSON booleans.
        """
        settings = (await self.ok("settings", "show", "--json")).json()
        self.assertEqual(
            settings,
            {
                "name": "Example Directory",
                "lock_profile": False,
                "mandatory_2fa": False,
                "ldap_require_2fa": False,
            },
        )

    async def test_show_text(self) -> None:
        """
        settings show prints booleans as true or false.
        """
        text = (await self.ok("settings", "show")).stdout
        self.assertIn("lock_profile:", text)
        self.assertIn("false", text)

    async def test_set(self) -> None:
        """
        settings set stores typed values.
        """
        result = await self.ok("settings", "set", "mandatory_2fa", "TRUE")
        self.assertEqual(result.stdout, "Set mandatory_2fa to true.\n")
        await self.ok("settings", "set", "name", "  Acme   ID ")
        settings = (await self.ok("settings", "show", "--json")).json()
        self.assertIs(settings["mandatory_2fa"], True)
        self.assertEqual(settings["name"], "Acme ID")

    async def test_set_unknown_key(self) -> None:
        """
        An unknown key fails, including the keys of other commands.
        """
        for key in ("colour", "ldap_server.enabled", "external.provider"):
            result = await self.fails(1, "settings", "set", key, "true")
            self.assertIn("Unknown setting", result.stderr)

    async def test_set_bad_value(self) -> None:
        """
        A boolean setting takes only true or false; name must not be empty.
        """
        await self.fails(1, "settings", "set", "lock_profile", "yes")
        await self.fails(1, "settings", "set", "name", "   ")
        settings = (await self.ok("settings", "show", "--json")).json()
        self.assertIs(settings["lock_profile"], False)
        self.assertEqual(settings["name"], "Example Directory")

    async def test_set_audited(self) -> None:
        """
        settings set is recorded with the key as subject.
        """
        await self.ok("settings", "set", "lock_profile", "true")
        async with self.directory() as directory:
            events = await directory.events(kind="settings.set")
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0].subject, "lock_profile")
        self.assertEqual(events[0].detail, "lock_profile = true")


class ProcessProtocol(protocol.ProcessProtocol):
    """
    Collect a child's output; on a pseudo-terminal, answer each password
    prompt with the next line of C{answers}.
    """

    PROMPTS = (b"New password", b"Repeat the password")

    def __init__(self, answers: Sequence[str] = ()) -> None:
        self.answers = list(answers)
        self.answered = 0
        self.output = b""
        self.errors = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        # Answer only after the prompt appears: getpass discards input typed
        # before it turns echo off.
        prompts = sum(self.output.count(prompt) for prompt in self.PROMPTS)
        while self.answered < prompts and self.answers:
            assert self.transport is not None
            self.transport.write(self.answers.pop(0).encode("utf-8") + b"\n")
            self.answered += 1

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode)


class ScriptTests(CLITestCase):
    """
    Tests that run the installed C{idserver-admin} script.
    """

    async def spawn(
        self, *argv: str, stdin: bytes | None = None, answers: Sequence[str] = ()
    ) -> tuple[int, bytes, bytes]:
        """
        Run the script with C{--config} and return its exit code, stdout and
        stderr. With C{answers} it runs on a pseudo-terminal, whose output
        also contains what a terminal shows.
        """
        child = ProcessProtocol(answers)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": self.base.path}
        get_reactor().spawnProcess(
            child,
            SCRIPT,
            [SCRIPT, "--config", self.config_path.path, *argv],
            env=env,
            usePTY=bool(answers),
        )
        if stdin is not None:
            assert child.transport is not None
            child.transport.write(stdin)
            child.transport.closeStdin()
        code = await child.ended
        return code, child.output, child.errors

    async def test_script(self) -> None:
        """
        The script initialises, adds a user from standard input and prints
        the user as JSON.
        """
        code, out, err = await self.spawn("init")
        self.assertEqual((code, err), (0, b""), out)

        code, out, err = await self.spawn(
            "user",
            "add",
            "alice",
            "--email",
            "Alice@Example.com",
            "--name",
            "Alice Liddell",
            "--password-stdin",
            stdin=ALICE_PASSWORD.encode("ascii") + b"\n",
        )
        self.assertEqual((code, err), (0, b""), out)

        code, out, err = await self.spawn("user", "show", "ALICE", "--json")
        self.assertEqual((code, err), (0, b""))
        shown = json.loads(out)
        self.assertEqual(shown["email"], "alice@example.com")
        self.assertEqual(set(shown), USER_FIELDS)
        self.assertTrue(await self.check_password("alice", ALICE_PASSWORD))

    async def test_script_error(self) -> None:
        """
        The script exits 1 with one line on stderr for an unknown user, and 2
        for a usage error.
        """
        await self.spawn("init")
        code, out, err = await self.spawn("user", "show", "nobody")
        self.assertEqual(code, 1)
        self.assertEqual(out, b"")
        self.assertEqual(
            err, b"idserver-admin: error: There is no user named 'nobody'.\n"
        )

        code, out, err = await self.spawn(
            "user", "add", "xavier", "--email", "x@example.com", "--password=abcdefghij"
        )
        self.assertEqual(code, 2)
        self.assertEqual(err.count(b"\n"), 1)
        self.assertIn(b"not accepted as arguments", err)
        self.assertIsNone(await self.stored_user("xavier"))

    async def test_interrupt(self) -> None:
        """
        SIGINT while a command runs ends the process with exit code 130
        instead of leaving the database threads running.
        """
        await self.spawn("init")
        # A handler that opens the database, interrupts its own process and
        # waits forever, standing in for a slow command.
        program = textwrap.dedent(
            f"""
            import os, signal, sys
            from twisted.internet import defer, reactor
            from idserver.admin import cli, users

            async def wait_forever(context, args):
                await context.directory.list_users()
                reactor.callLater(0, os.kill, os.getpid(), signal.SIGINT)
                await defer.Deferred()

            users._list = wait_forever
            sys.exit(cli.main(["--config", {self.config_path.path!r}, "user", "list"]))
            """
        )
        child = ProcessProtocol()
        get_reactor().spawnProcess(
            child, sys.executable, [sys.executable, "-c", program], env=os.environ
        )
        code = await child.ended
        self.assertEqual(code, 130, child.errors)
        self.assertEqual(child.errors, b"idserver-admin: error: interrupted\n")

    async def test_terminal_prompt(self) -> None:
        """
        On a terminal the real prompt reads twice without echo; a matching
        entry sets the password and a mismatch changes nothing.
        """
        await self.spawn("init")
        await self.spawn("user", "add", "bob", "--email", "bob@example.com", stdin=b"")

        code, out, _ = await self.spawn(
            "user", "set-password", "bob", answers=["mismatch-one", "mismatch-two"]
        )
        self.assertEqual(code, 1, out)
        self.assertIn(b"do not match", out)
        self.assertNotIn(b"mismatch-one", out)
        user = await self.stored_user("bob")
        assert user is not None
        self.assertFalse(user.has_password)

        code, out, _ = await self.spawn(
            "user", "set-password", "bob", answers=["n3w-password", "n3w-password"]
        )
        self.assertEqual(code, 0, out)
        self.assertNotIn(b"n3w-password", out)
        self.assertTrue(await self.check_password("bob", "n3w-password"))
