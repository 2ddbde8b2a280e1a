"""
The base of every C{idserver-admin} command module: the context a command
runs in and the call that registers a subcommand.

A command module defines C{register(commands)}, which calls L{add_command}
once per subcommand (nesting with L{add_group} for two-word commands such
as C{user add}), and is listed in L{idserver.admin.cli.COMMAND_MODULES}.
Each subcommand has an C{async} handler taking the L{CommandContext} and
the parsed arguments. A handler that changes something calls
L{CommandContext.begin_change} before the change and
L{CommandContext.record_change} after it, so the audit log gets the
success, or the failure when the change raises. Errors of
L{idserver.errors} and L{CommandError} become one line on standard error
and exit code 1; L{twisted.python.usage.UsageError} becomes exit code 2.
"""

from __future__ import annotations

import argparse
import enum
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

from twisted.python import usage

from idserver.errors import NotFoundError
from idserver.model import Group, User

if TYPE_CHECKING:
    from idserver.config import Config
    from idserver.directory.sqlite import SQLiteDirectory
    from idserver.passwords import Argon2Hasher

__all__ = [
    "CommandContext",
    "CommandError",
    "CommandModule",
    "Handler",
    "NewPassword",
    "add_command",
    "add_group",
    "database_path",
    "find_group",
    "find_user",
]

#: The coroutine function that carries out a command. It returns the exit
#: code, or C{None} for success.
Handler = Callable[["CommandContext", argparse.Namespace], Awaitable[int | None]]

#: The database access of a command: C{"existing"} opens it and fails when it
#: was never created, C{"create"} lets the command create it (C{init} only),
#: C{"none"} does not open it.
DatabaseUse = Literal["existing", "create", "none"]


class NewPassword(enum.Enum):
    """
    The way a command takes a new password.
    """

    #: Prompt on a terminal; without a terminal or C{--password-stdin}, go
    #: without a password.
    optional = "optional"

    #: Prompt on a terminal; without a terminal or C{--password-stdin}, fail.
    required = "required"


class CommandModule(Protocol):
    """
    A module that adds subcommands to C{idserver-admin}.
    """

    def register(self, commands: argparse._SubParsersAction[Any]) -> None:
        """
        Add this module's subcommands to C{commands} with L{add_command}.
        """


class CommandError(Exception):
    """
    A command failed for a reason other than a directory rule (for example
    two different passwords at the prompt). The message is printed as it is.
    """


@dataclass
class CommandContext:
    """
    Everything a command handler works with.

    @ivar reactor: the running reactor.
    @ivar config: the loaded configuration file.
    @ivar actor: who runs the command, as recorded in the audit log:
        C{os:} and the operating-system user name.
    @ivar new_password: the password read from the prompt or standard input
        for commands registered with C{password=...}, else C{None}.
    """

    reactor: Any
    config: Config
    stdin: IO[str]
    stdout: IO[str]
    stderr: IO[str]
    actor: str
    new_password: str | None = None
    _directory: SQLiteDirectory | None = None
    _change: tuple[str, str | None] | None = field(default=None, repr=False)

    _hasher: Argon2Hasher | None = field(default=None, repr=False)
    _shutdown_trigger: Any = field(default=None, repr=False)

    def open_database(self) -> None:
        """
        Start the password hasher and open the directory database, creating
        it and applying pending schema migrations as needed.
        """
        from idserver.directory.sqlite import open_directory
        from idserver.passwords import Argon2Hasher

        passwords = self.config.passwords
        hasher = Argon2Hasher(
            self.reactor,
            time_cost=passwords.time_cost,
            memory_cost=passwords.memory_cost,
            parallelism=passwords.parallelism,
            max_threads=passwords.max_threads,
            max_queue=passwords.max_queue,
        )
        hasher.start()
        self._hasher = hasher
        # The pools' threads keep the process alive, so they must stop even
        # when SIGINT stops the reactor before the command finishes.
        self._shutdown_trigger = self.reactor.addSystemEventTrigger(
            "during", "shutdown", self._close_at_shutdown
        )
        self._directory = open_directory(
            database_path(self.config), reactor=self.reactor, hasher=hasher
        )

    def close(self) -> None:
        """
        Close the directory and stop the hasher, if they were opened.
        """
        trigger, self._shutdown_trigger = self._shutdown_trigger, None
        if trigger is not None:
            self.reactor.removeSystemEventTrigger(trigger)
        directory, self._directory = self._directory, None
        hasher, self._hasher = self._hasher, None
        try:
            if directory is not None:
                directory.close()
        finally:
            if hasher is not None:
                hasher.stop()

    def _close_at_shutdown(self) -> None:
        self._shutdown_trigger = None
        self.close()

    @property
    def directory(self) -> SQLiteDirectory:
        """
        The open directory; only for commands registered with
        C{database="existing"} or C{"create"}.
        """
        if self._directory is None:
            raise RuntimeError("This command was registered without a database.")
        return self._directory

    def begin_change(self, kind: str, subject: str | None) -> None:
        """
        Note the admin change about to be made, so that a failure is recorded
        in the audit log with C{kind} and C{subject} even when it happens
        before L{record_change}.

        @param kind: the dotted event name, such as C{user.add}.
        @param subject: the username, group name or setting concerned.
        """
        self._change = (kind, subject)

    async def record_change(self, detail: str = "") -> None:
        """
        Record the change noted with L{begin_change} as a success.

        @param detail: what changed, in a few words; never a secret.
        """
        if self._change is None:
            raise RuntimeError("record_change() called without begin_change().")
        kind, subject = self._change
        self._change = None
        await self.directory.record(
            kind,
            "success",
            entry_point="cli",
            actor=self.actor,
            subject=subject,
            detail=detail,
        )

    async def record_failure(self, error: Exception) -> None:
        """
        Record the change noted with L{begin_change}, if any is pending, as a
        failure with the error message as detail.
        """
        if self._change is None or self._directory is None:
            return
        kind, subject = self._change
        self._change = None
        await self._directory.record(
            kind,
            "failure",
            entry_point="cli",
            actor=self.actor,
            subject=subject,
            detail=str(error),
        )


def database_path(config: Config) -> str:
    """
    Return the path of the SQLite database: C{idserver.sqlite3} in the data
    directory. The daemon opens the same file, so both take it from here.
    """
    return os.path.join(config.server.data_dir, "idserver.sqlite3")


def add_group(
    commands: argparse._SubParsersAction[Any], name: str, *, help: str
) -> argparse._SubParsersAction[Any]:
    """
    Add a command word that only groups subcommands (C{user}, C{group}, …)
    and return the collection to add its subcommands to.
    """
    parser = commands.add_parser(name, help=help, description=help)
    return parser.add_subparsers(
        title="commands", dest=f"{name}_command", metavar="COMMAND", required=True
    )


def add_command(
    commands: argparse._SubParsersAction[Any],
    name: str,
    handler: Handler,
    *,
    help: str,
    description: str | None = None,
    database: DatabaseUse = "existing",
    password: NewPassword | None = None,
    check: Callable[[argparse.Namespace], None] | None = None,
    json: bool = False,
) -> argparse.ArgumentParser:
    """
    Add one subcommand and return its parser, to which the caller adds the
    command's own arguments.

    @param handler: the coroutine function that runs the command.
    @param help: one line for the command list of C{--help}.
    @param description: the text of the command's own C{--help}; C{help}
        when C{None}.
    @param database: how the command uses the database (L{DatabaseUse}).
    @param password: whether the command takes a new password; adds
        C{--password-stdin}. Passwords are never accepted as arguments.
    @param check: validates the parsed arguments before anything is read or
        opened (before the password prompt); raises
        L{idserver.errors.DirectoryError} or L{usage.UsageError}.
    @param json: add a C{--json} option (stored as C{args.json}).
    """
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help, description=description or help
    )
    parser.set_defaults(
        handler=handler,
        database=database,
        password_use=password,
        check=check,
    )
    if json:
        parser.add_argument(
            "--json",
            action="store_true",
            help="print the result as one JSON document",
        )
    if password is not None:
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input",
        )
        parser.add_argument(
            "--password",
            dest="argv_password",
            action=_RejectPasswordArgument,
            nargs="?",
            help=argparse.SUPPRESS,
        )
    return parser


class _RejectPasswordArgument(argparse.Action):
    """
    Reject C{--password} with advice, since arguments are visible to every
    local user in the process list and end up in shell history.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        raise usage.UsageError(
            "passwords are not accepted as arguments; enter the password at"
            " the prompt or pass it on standard input with --password-stdin"
        )


async def find_user(context: CommandContext, username: str) -> User:
    """
    Look up a user by username, ignoring case.

    @raise NotFoundError: there is no such user.
    """
    user = await context.directory.user_by_username(username)
    if user is None:
        raise NotFoundError(f"There is no user named {username!r}.", "username")
    return user


async def find_group(context: CommandContext, name: str) -> Group:
    """
    Look up a group by name, ignoring case.

    @raise NotFoundError: there is no such group.
    """
    group = await context.directory.group_by_name(name)
    if group is None:
        raise NotFoundError(f"There is no group named {name!r}.", "name")
    return group
