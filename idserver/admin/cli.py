"""
The C{idserver-admin} command line: argument parsing, input gathering and
the run of one command against the directory.

A run has two steps. L{prepare} is synchronous: it parses the arguments,
loads the configuration and reads the new password (prompt or standard
input). L{main} calls it before starting the reactor, so a prompt waits
for the administrator without holding up the reactor, and bad input fails
before anything is opened. L{execute} then opens the directory and awaits
the command's handler on the reactor.

Exit codes: 0 on success, 1 when the operation failed (a directory rule,
an unknown user or group, a database error), 2 for a usage error (bad
arguments, a password given as an argument, a bad configuration file),
130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, NoReturn

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.python import usage

from idserver.admin import (
    clients,
    groups,
    initialize,
    keys,
    ldap_server,
    settings,
    users,
)
from idserver.admin.command import (
    CommandContext,
    CommandError,
    CommandModule,
    NewPassword,
    database_path,
)
from idserver.config import (
    CONFIG_ENVIRONMENT_VARIABLE,
    DEFAULT_CONFIG_PATH,
    Config,
    default_config_path,
    load_config,
)
from idserver.directory.schema import SchemaError
from idserver.errors import DirectoryError, HasherBusyError

__all__ = [
    "COMMAND_MODULES",
    "build_parser",
    "execute",
    "main",
    "prepare",
    "run",
]

#: The modules whose C{register(commands)} adds the subcommands, in the
#: order C{--help} lists them. A new command module is added here.
COMMAND_MODULES: tuple[CommandModule, ...] = (
    initialize,
    users,
    groups,
    settings,
    clients,
    keys,
    ldap_server,
)

PROGRAM = "idserver-admin"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Reads a password without echo: C{getpass.getpass} or a test double.
PasswordPrompt = Callable[[str], str]


class _Exit(Exception):
    """
    The parser finished the run early (after C{--help}) with this status.
    """

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _ArgumentParser(argparse.ArgumentParser):
    """
    An argument parser that raises instead of exiting, so the caller decides
    how the error is printed, and that accepts no abbreviated options.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise usage.UsageError(f"{_hide_values(message)} (see '{self.prog} --help')")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


_UNRECOGNIZED = "unrecognized arguments: "


def _hide_values(message: str) -> str:
    """
    Keep only option names in argparse's list of unrecognized arguments,
    because a stray value may be a password typed in the wrong place.
    """
    if not message.startswith(_UNRECOGNIZED):
        return message
    words = message[len(_UNRECOGNIZED) :].split()
    options = [word.split("=", 1)[0] for word in words if word.startswith("-")]
    hidden = len(words) - len(options)
    parts = []
    if options:
        parts.append(" ".join(options))
    if hidden:
        parts.append(f"{hidden} other value(s), not shown")
    return _UNRECOGNIZED + "; ".join(parts)


@dataclass
class Invocation:
    """
    A parsed command line, ready to run.
    """

    args: argparse.Namespace
    config: Config
    stdin: IO[str]
    stdout: IO[str]
    stderr: IO[str]
    new_password: str | None


def build_parser() -> argparse.ArgumentParser:
    """
    Build the parser for every command of L{COMMAND_MODULES}.
    """
    parser = _ArgumentParser(
        prog=PROGRAM,
        description="Administer the users, groups and settings of idserver.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=(
            f"the configuration file (default: ${CONFIG_ENVIRONMENT_VARIABLE}"
            f" if set, else {DEFAULT_CONFIG_PATH})"
        ),
    )
    commands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def prepare(
    argv: Sequence[str],
    stdin: IO[str],
    stdout: IO[str],
    stderr: IO[str],
    prompt: PasswordPrompt,
) -> Invocation | int:
    """
    Parse C{argv}, load the configuration and read the new password, without
    a reactor.

    @return: the L{Invocation} to pass to L{execute}, or the exit code when
        the run ends here (help printed, or an error already reported on
        C{stderr}).
    """
    try:
        _check_encoding(argv)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = build_parser().parse_args(list(argv))
        if args.check is not None:
            args.check(args)
        config = load_config(_config_path(args))
        if args.database == "existing":
            _require_database(config)
        new_password = None
        if args.password_use is not None:
            new_password = read_new_password(args, stdin, prompt)
    except _Exit as stop:
        return stop.status
    except usage.UsageError as error:
        _report(stderr, error)
        return EXIT_USAGE
    except (DirectoryError, CommandError) as error:
        _report(stderr, error)
        return EXIT_FAILURE
    except OSError as error:
        _report(stderr, _describe_os_error(error))
        return EXIT_FAILURE

    return Invocation(args, config, stdin, stdout, stderr, new_password)


async def execute(reactor: Any, invocation: Invocation) -> int:
    """
    Open the directory when the command uses it, run the command's handler
    and close everything again.

    @return: the exit code. Errors are reported on the invocation's
        C{stderr}; a failed admin change is also recorded in the audit log.
    """
    args = invocation.args
    context = CommandContext(
        reactor=reactor,
        config=invocation.config,
        stdin=invocation.stdin,
        stdout=invocation.stdout,
        stderr=invocation.stderr,
        actor=_os_actor(),
        new_password=invocation.new_password,
    )
    try:
        if args.database == "existing":
            context.open_database()
        code = await args.handler(context, args)
        return EXIT_OK if code is None else code
    except (DirectoryError, CommandError, HasherBusyError) as error:
        await _record_failure(context, error)
        _report(invocation.stderr, error)
        return EXIT_FAILURE
    except usage.UsageError as error:
        _report(invocation.stderr, error)
        return EXIT_USAGE
    except (sqlite3.Error, SchemaError) as error:
        _report(invocation.stderr, f"database error: {error}")
        return EXIT_FAILURE
    except OSError as error:
        _report(invocation.stderr, _describe_os_error(error))
        return EXIT_FAILURE
    except Exception as error:
        # A bug, not bad input: show where it happened.
        traceback.print_exc(file=invocation.stderr)
        await _record_failure(context, error)
        _report(invocation.stderr, f"unexpected error: {error!r}")
        return EXIT_FAILURE
    finally:
        context.close()


def run(
    reactor: Any,
    argv: Sequence[str],
    stdin: IO[str],
    stdout: IO[str],
    stderr: IO[str],
    *,
    prompt: PasswordPrompt = getpass.getpass,
) -> Deferred[int]:
    """
    Run one command line on an already running reactor.

    @return: a L{Deferred} firing with the exit code.
    """
    prepared = prepare(argv, stdin, stdout, stderr, prompt)
    if isinstance(prepared, int):
        return Deferred.fromCoroutine(_constant(prepared))
    return Deferred.fromCoroutine(execute(reactor, prepared))


def main(
    argv: Sequence[str] | None = None,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """
    Run C{idserver-admin} with its own reactor and return the exit code.

    The global reactor runs once per process, so this runs one command;
    L{run} runs more on a reactor that is already running.

    @param argv: the arguments after the program name; C{sys.argv[1:]} by
        default. The streams default to those of C{sys}.
    """
    argv = sys.argv[1:] if argv is None else argv
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr

    try:
        prepared = prepare(argv, stdin, stdout, stderr, getpass.getpass)
    except KeyboardInterrupt:
        stderr.write("\n")
        _report(stderr, "interrupted; nothing was changed")
        return EXIT_INTERRUPTED
    if isinstance(prepared, int):
        return prepared

    codes: list[int] = []

    async def run_on_reactor(reactor: Any) -> None:
        codes.append(await execute(reactor, prepared))

    try:
        react(run_on_reactor)
    except SystemExit:
        pass
    if not codes:
        # SIGINT stops the reactor before the handler finishes.
        _report(stderr, "interrupted")
        return EXIT_INTERRUPTED
    return codes[0]


def read_new_password(
    args: argparse.Namespace, stdin: IO[str], prompt: PasswordPrompt
) -> str | None:
    """
    Read the new password of a command registered with C{password=...}:
    the first line of standard input with C{--password-stdin}, else from a
    prompt asked twice when standard input is a terminal.

    @return: the password, or C{None} when the command may go without one
        and none was given.
    @raise CommandError: no password, or the two entries differ.
    """
    optional = args.password_use is NewPassword.optional
    if args.password_stdin:
        line = stdin.readline()
        if not line:
            raise CommandError("No password on standard input; nothing was changed.")
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise CommandError(
                "The password on standard input is empty; nothing was changed."
            )
        return password

    if not stdin.isatty():
        if optional:
            return None
        raise CommandError(
            "Standard input is not a terminal, so the password cannot be"
            " prompted for; pass it on standard input with --password-stdin."
        )

    username = getattr(args, "username", None)
    label = f"New password for {username}" if username else "New password"
    try:
        first = prompt(f"{label}{' (empty for none)' if optional else ''}: ")
        if not first and optional:
            return None
        if not first:
            raise CommandError("No password entered; nothing was changed.")
        second = prompt("Repeat the password: ")
    except EOFError:
        raise CommandError("No password entered; nothing was changed.")
    if first != second:
        raise CommandError("The passwords do not match; nothing was changed.")
    return first


def _check_encoding(argv: Sequence[str]) -> None:
    """
    Reject arguments that were not UTF-8 on the command line.

    Python decodes such bytes to lone surrogates, which SQLite, JSON output
    and the web pages cannot encode later.

    @raise usage.UsageError: an argument has lone surrogates.
    """
    for position, argument in enumerate(argv, start=1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            raise usage.UsageError(
                f"argument {position} is not valid UTF-8; check the terminal's"
                " character encoding (locale)"
            ) from None


def _config_path(args: argparse.Namespace) -> str:
    if args.config:
        return str(args.config)
    return default_config_path()


def _require_database(config: Config) -> None:
    path = database_path(config)
    # Not os.path.exists, which is also false when the file cannot be
    # reached (no permission on the data directory, a symlink loop): those
    # are reported as they are, since init would not help.
    try:
        os.stat(path)
    except FileNotFoundError:
        raise CommandError(
            f"The database {path} does not exist; create it with '{PROGRAM} init'."
        ) from None


def _os_actor() -> str:
    """
    Name the operating-system user running the command, for the audit log.
    """
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        # No login name in the environment and no passwd entry for the uid.
        name = f"uid {os.getuid()}"
    return f"os:{name}"


async def _record_failure(context: CommandContext, error: Exception) -> None:
    try:
        await context.record_failure(error)
    except Exception:
        # The error being reported matters more than its audit entry.
        context.stderr.write(f"{PROGRAM}: warning: could not record the failure\n")


async def _constant(value: int) -> int:
    return value


def _describe_os_error(error: OSError) -> str:
    if error.filename is not None and error.strerror:
        return f"{error.strerror}: {error.filename}"
    return str(error)


def _report(stream: IO[str], error: object) -> None:
    message = " ".join(str(error).split())
    stream.write(f"{PROGRAM}: error: {message}\n")
