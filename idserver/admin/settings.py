"""
The C{idserver-admin settings ...} commands, for the general settings
(server name, lock profile, mandatory 2FA, LDAP 2FA). The LDAP server and
external directory settings have commands of their own.
"""

from __future__ import annotations

import argparse
from typing import Any

from idserver.admin.command import CommandContext, add_command, add_group
from idserver.admin.output import write_json, write_record
from idserver.sessions.maintenance import end_sessions_without_2fa
from idserver.sessions.sqlite import SQLiteSessionStore
from idserver.validation import SETTINGS_DEFAULTS, parse_setting

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """
    Add C{settings} and its subcommands.
    """
    settings = add_group(commands, "settings", help="show and change settings")

    add_command(settings, "show", _show, help="show every setting", json=True)

    known = ", ".join(sorted(SETTINGS_DEFAULTS))
    parser = add_command(
        settings,
        "set",
        _set,
        help=f"change one setting ({known}); booleans take true or false",
        check=_check_set,
    )
    parser.add_argument("key", metavar="KEY")
    parser.add_argument("value", metavar="VALUE")


def _check_set(args: argparse.Namespace) -> None:
    # Only the general settings: keys such as ldap_server.* belong to the
    # commands that validate their whole structure.
    args.parsed_value = parse_setting(args.key, args.value)


async def _show(context: CommandContext, args: argparse.Namespace) -> None:
    stored = await context.directory.get_settings()
    settings = {
        key: stored.get(key, default) for key, default in SETTINGS_DEFAULTS.items()
    }
    if args.json:
        write_json(context.stdout, settings)
        return
    write_record(context.stdout, settings)


async def _set(context: CommandContext, args: argparse.Namespace) -> None:
    context.begin_change("settings.set", args.key)
    await context.directory.set_setting(args.key, args.parsed_value)
    formatted = _format_setting(args.parsed_value)
    await context.record_change(f"{args.key} = {formatted}")
    context.stdout.write(f"Set {args.key} to {formatted}.\n")
    if args.key == "mandatory_2fa" and args.parsed_value:
        await _end_sessions_without_2fa(context)


async def _end_sessions_without_2fa(context: CommandContext) -> None:
    # Mandatory 2FA ends at once the sessions and refresh tokens of users
    # without it; a running daemon also refuses them from now on.
    directory = context.directory
    store = SQLiteSessionStore(directory.database, directory)
    ended = await end_sessions_without_2fa(directory, store)
    if ended:
        context.stdout.write(
            "Ended the sessions of the users without 2FA: " + ", ".join(ended) + ".\n"
        )


def _format_setting(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
