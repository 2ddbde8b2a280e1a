"""
The C{idserver-admin user ...} commands.
"""

from __future__ import annotations

import argparse
from typing import Any

from twisted.python import usage

from idserver.admin.command import (
    CommandContext,
    NewPassword,
    add_command,
    add_group,
    find_user,
)
from idserver.admin.output import user_to_json, write_json, write_record, write_table
from idserver.changes import check_external_fields
from idserver.model import User
from idserver.validation import (
    normalize_email,
    normalize_username,
    validate_display_name,
)

__all__ = ["register"]

_USERNAME_HELP = "the username (case-insensitive)"


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """
    Add C{user} and its subcommands.
    """
    user = add_group(commands, "user", help="manage users")

    parser = add_command(
        user,
        "add",
        _add,
        help="create a user",
        description=(
            "Create a user. The password is read from standard input with"
            " --password-stdin, else prompted for twice when standard input is"
            " a terminal (an empty entry creates the user without one). Without"
            " a terminal and without --password-stdin the user has no password"
            " until 'user set-password'."
        ),
        password=NewPassword.optional,
        check=_check_add,
        json=True,
    )
    parser.add_argument("username", metavar="USERNAME", help=_USERNAME_HELP)
    parser.add_argument("--email", required=True, help="the email address")
    parser.add_argument("--name", default="", help="the display name")
    parser.add_argument(
        "--fallback-email", metavar="EMAIL", help="a second address for recovery"
    )
    parser.add_argument(
        "--admin", action="store_true", help="give the user the admin role"
    )

    parser = add_command(
        user,
        "set",
        _set,
        help="change the email, fallback email, display name or role of a user",
        check=_check_set,
        json=True,
    )
    parser.add_argument("username", metavar="USERNAME", help=_USERNAME_HELP)
    parser.add_argument("--email", help="the new email address")
    parser.add_argument(
        "--fallback-email",
        metavar="EMAIL",
        help="the new fallback email address; an empty value removes it",
    )
    parser.add_argument("--name", help="the new display name")
    parser.add_argument("--role", choices=("admin", "user"), help="the new role")

    parser = add_command(
        user,
        "set-password",
        _set_password,
        help="set the password of a user",
        password=NewPassword.required,
    )
    parser.add_argument("username", metavar="USERNAME", help=_USERNAME_HELP)

    parser = add_command(
        user, "list", _list, help="list every user, ordered by username", json=True
    )

    parser = add_command(user, "show", _show, help="show one user", json=True)
    parser.add_argument("username", metavar="USERNAME", help=_USERNAME_HELP)

    parser = add_command(
        user, "disable", _disable, help="disable a user; they can no longer log in"
    )
    parser.add_argument("username", metavar="USERNAME", help=_USERNAME_HELP)

    parser = add_command(user, "enable", _enable, help="enable a disabled user")
    parser.add_argument("username", metavar="USERNAME", help=_USERNAME_HELP)

    parser = add_command(
        user,
        "delete",
        _delete,
        help="delete a user; the username can never be used again",
    )
    parser.add_argument("username", metavar="USERNAME", help=_USERNAME_HELP)

    parser = add_command(
        user,
        "totp-enroll",
        _totp_enroll,
        help="generate a TOTP secret and turn 2FA on",
        description=(
            "Generate a new TOTP secret for a user and turn 2FA on at once,"
            " replacing any earlier secret. Prints the secret and its"
            " otpauth:// URI for an authenticator app."
        ),
        json=True,
    )
    parser.add_argument("username", metavar="USERNAME", help=_USERNAME_HELP)

    parser = add_command(
        user, "totp-disable", _totp_disable, help="turn 2FA off for a user"
    )
    parser.add_argument("username", metavar="USERNAME", help=_USERNAME_HELP)


def _check_add(args: argparse.Namespace) -> None:
    # Validated here too, so that a bad name fails before the password
    # prompt; the directory validates again when it stores the user.
    normalize_username(args.username)
    normalize_email(args.email)
    if args.fallback_email:
        normalize_email(args.fallback_email, "fallback_email")
    validate_display_name(args.name)


def _check_set(args: argparse.Namespace) -> None:
    changes = (args.email, args.fallback_email, args.name, args.role)
    if all(change is None for change in changes):
        raise usage.UsageError(
            "nothing to change: give at least one of --email, --fallback-email,"
            " --name and --role"
        )


async def _add(context: CommandContext, args: argparse.Namespace) -> None:
    username = normalize_username(args.username)
    role = "admin" if args.admin else "user"
    password = context.new_password

    context.begin_change("user.add", username)
    user = await context.directory.add_user(
        username,
        args.email,
        display_name=args.name,
        fallback_email=args.fallback_email or None,
        role=role,
        password=password,
    )
    await context.record_change(
        f"role {role}, {'with' if password else 'without'} a password"
    )

    if args.json:
        write_json(context.stdout, user_to_json(user))
        return
    context.stdout.write(f"Added user {user.username} ({user.id}).\n")
    if password is None:
        context.stdout.write(
            f"The user has no password; set one with"
            f" 'idserver-admin user set-password {user.username}'.\n"
        )


async def _set(context: CommandContext, args: argparse.Namespace) -> None:
    user = await find_user(context, args.username)
    context.begin_change("user.update", user.username)
    _check_local_fields(user, args)

    updated = await context.directory.update_user(
        user.id,
        email=args.email,
        # An administrator set the address, so it counts as verified.
        email_verified=True if args.email is not None else None,
        fallback_email=args.fallback_email,
        display_name=args.name,
        role=args.role,
    )
    detail = _describe_changes(args)
    await context.record_change(detail)

    if args.json:
        write_json(context.stdout, user_to_json(updated))
        return
    context.stdout.write(f"Updated user {updated.username}: {detail}.\n")


def _describe_changes(args: argparse.Namespace) -> str:
    """
    Name the fields that C{user set} changes, for the confirmation and the
    audit log; values other than the role are left out.
    """
    changes = []
    if args.email is not None:
        changes.append("email")
    if args.fallback_email == "":
        changes.append("fallback email removed")
    elif args.fallback_email is not None:
        changes.append("fallback email")
    if args.name is not None:
        changes.append("display name")
    if args.role is not None:
        changes.append(f"role {args.role}")
    return "changed " + ", ".join(changes)


def _check_local_fields(user: User, args: argparse.Namespace) -> None:
    """
    Reject a change of the fields that the external directory owns.

    @raise ReadOnlyError: C{user} comes from the external directory and
        C{args} changes its email or display name.
    """
    check_external_fields(user, email=args.email, display_name=args.name)


async def _set_password(context: CommandContext, args: argparse.Namespace) -> None:
    user = await find_user(context, args.username)
    context.begin_change("user.password", user.username)
    await context.directory.set_password(user.id, context.new_password)
    await context.record_change("password set by an administrator")
    context.stdout.write(f"Set the password of {user.username}.\n")


async def _list(context: CommandContext, args: argparse.Namespace) -> None:
    users = await context.directory.list_users()
    if args.json:
        write_json(context.stdout, [user_to_json(user) for user in users])
        return
    write_table(
        context.stdout,
        ("USERNAME", "ROLE", "ACTIVE", "2FA", "SOURCE", "EMAIL", "NAME"),
        (
            (
                user.username,
                user.role.value,
                user.active,
                user.totp_enabled,
                user.source.value,
                user.email,
                user.display_name,
            )
            for user in users
        ),
    )


async def _show(context: CommandContext, args: argparse.Namespace) -> None:
    user = await find_user(context, args.username)
    record = user_to_json(user)
    if args.json:
        write_json(context.stdout, record)
        return
    record["password"] = "set" if user.has_password else "not set"
    record["uid_number"] = user.uid_number
    write_record(context.stdout, record)


async def _disable(context: CommandContext, args: argparse.Namespace) -> None:
    await _set_active(context, args.username, False)


async def _enable(context: CommandContext, args: argparse.Namespace) -> None:
    await _set_active(context, args.username, True)


async def _set_active(context: CommandContext, username: str, active: bool) -> None:
    user = await find_user(context, username)
    verb = "enable" if active else "disable"
    context.begin_change(f"user.{verb}", user.username)
    await context.directory.update_user(user.id, active=active)
    await context.record_change()
    context.stdout.write(f"{verb.capitalize()}d user {user.username}.\n")


async def _delete(context: CommandContext, args: argparse.Namespace) -> None:
    user = await find_user(context, args.username)
    context.begin_change("user.delete", user.username)
    await context.directory.delete_user(user.id)
    await context.record_change(f"deleted {user.id}")
    context.stdout.write(
        f"Deleted user {user.username}; the username stays retired and cannot"
        " be given to anyone else.\n"
    )


async def _totp_enroll(context: CommandContext, args: argparse.Namespace) -> None:
    from idserver.totp import provisioning_uri

    user = await find_user(context, args.username)
    context.begin_change("user.totp_enroll", user.username)
    secret = await context.directory.enable_totp(user.id)
    await context.record_change("2FA turned on with a new secret")

    settings = await context.directory.get_settings()
    uri = provisioning_uri(secret, user.username, settings["name"])
    if args.json:
        write_json(context.stdout, {"secret": secret, "uri": uri})
        return
    context.stdout.write(f"2FA is now on for {user.username}.\n")
    write_record(context.stdout, {"secret": secret, "uri": uri})


async def _totp_disable(context: CommandContext, args: argparse.Namespace) -> None:
    user = await find_user(context, args.username)
    context.begin_change("user.totp_disable", user.username)
    await context.directory.disable_totp(user.id)
    await context.record_change("2FA turned off")
    context.stdout.write(f"2FA is now off for {user.username}.\n")
