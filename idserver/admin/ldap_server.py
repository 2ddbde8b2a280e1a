"""
The C{idserver-admin ldap-server ...} commands: turn the LDAP server on and
off, set the addresses allowed to connect, and set the secret of the admin
bind DN.

The running daemon reads these settings again when the directory changes,
so they take effect without a restart.
"""

from __future__ import annotations

import argparse
from typing import Any

from twisted.python import usage

from idserver.admin.command import CommandContext, CommandError, add_command, add_group
from idserver.admin.output import write_json, write_record
from idserver.errors import ValidationError
from idserver.ldap import settings as ldap_settings
from idserver.ldap.access import AccessPolicy
from idserver.ldap.dn import format_dn, parse_dn

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """
    Add C{ldap-server} and its subcommands.
    """
    ldap = add_group(commands, "ldap-server", help="configure the LDAP server")

    enable = add_command(
        ldap,
        "enable",
        _enable,
        help="turn the LDAP server on",
        description=(
            "Turn the LDAP server on. --allow replaces the list of client"
            " addresses allowed to connect. Without a stored secret, or with"
            " --generate-secret, a secret for the admin bind DN is generated"
            " and printed once; --secret-stdin sets one you choose instead."
        ),
        check=_check_enable,
        json=True,
    )
    enable.add_argument(
        "--allow",
        metavar="ADDR_OR_CIDR",
        action="append",
        default=None,
        help=(
            "an IPv4 or IPv6 address or CIDR range allowed to connect; repeat"
            " the option for more (replaces the current list)"
        ),
    )
    secret = enable.add_mutually_exclusive_group()
    secret.add_argument(
        "--secret-stdin",
        action="store_true",
        help="read the admin bind DN's secret from the first line of standard input",
    )
    secret.add_argument(
        "--generate-secret",
        action="store_true",
        help="generate a new secret for the admin bind DN and print it once",
    )

    add_command(ldap, "disable", _disable, help="turn the LDAP server off")
    add_command(
        ldap,
        "show",
        _show,
        help="show whether the LDAP server is on, its allowlist and its DNs",
        json=True,
    )


def _check_enable(args: argparse.Namespace) -> None:
    if args.allow is None:
        return
    try:
        ldap_settings.check_allowlist(args.allow)
    except ValidationError as e:
        raise usage.UsageError(str(e)) from None


def _describe(context: CommandContext, policy: AccessPolicy) -> dict[str, Any]:
    suffix = format_dn(parse_dn(context.config.ldap.suffix))
    return {
        "enabled": policy.enabled,
        "allowlist": list(policy.allowlist_lines),
        "bind_dn": f"cn=admin,ou=system,{suffix}",
        "users_dn": f"ou=users,{suffix}",
        "groups_dn": f"ou=groups,{suffix}",
    }


async def _policy(context: CommandContext) -> AccessPolicy:
    return AccessPolicy.from_settings(await context.directory.get_settings())


def _read_secret(context: CommandContext) -> str:
    secret = context.stdin.readline().rstrip("\r\n")
    if not secret:
        raise CommandError(
            "No secret on standard input: expected it on the first line."
        )
    ldap_settings.check_secret(secret)
    return secret


async def _enable(context: CommandContext, args: argparse.Namespace) -> None:
    chosen = _read_secret(context) if args.secret_stdin else None
    lines = (
        ldap_settings.check_allowlist(args.allow) if args.allow is not None else None
    )

    context.begin_change("ldap_server.enable", None)
    generated = await ldap_settings.enable(
        context.directory,
        allowlist=lines,
        secret=chosen,
        new_secret=args.generate_secret,
    )
    changes = ["enabled"]
    if lines is not None:
        changes.append("allowlist = " + ", ".join(lines))
    if chosen is not None:
        changes.append("secret set")
    elif generated is not None:
        changes.append("secret generated")
    await context.record_change("; ".join(changes))

    result = _describe(context, await _policy(context))
    if generated is not None:
        result["secret"] = generated
    if args.json:
        write_json(context.stdout, result)
        return
    write_record(context.stdout, result)
    if generated is not None:
        context.stdout.write("The secret is shown only this once.\n")
    if not result["allowlist"]:
        context.stdout.write(
            "The allowlist is empty, so every connection is refused;"
            " add addresses with --allow.\n"
        )


async def _disable(context: CommandContext, args: argparse.Namespace) -> None:
    context.begin_change("ldap_server.disable", None)
    await ldap_settings.disable(context.directory)
    await context.record_change("disabled")
    context.stdout.write("The LDAP server is disabled.\n")


async def _show(context: CommandContext, args: argparse.Namespace) -> None:
    result = _describe(context, await _policy(context))
    if args.json:
        write_json(context.stdout, result)
        return
    write_record(context.stdout, result)
