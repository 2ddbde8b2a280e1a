"""
The C{idserver-admin group ...} commands.
"""

from __future__ import annotations

import argparse
from typing import Any

from idserver.admin.command import (
    CommandContext,
    add_command,
    add_group,
    find_group,
    find_user,
)
from idserver.admin.output import group_to_json, write_json, write_record, write_table
from idserver.validation import normalize_group_name

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """
    Add C{group} and its subcommands.
    """
    group = add_group(commands, "group", help="manage groups")

    parser = add_command(
        group, "add", _add, help="create a local group", check=_check_add, json=True
    )
    parser.add_argument("name", metavar="NAME")

    parser = add_command(
        group, "delete", _delete, help="delete a group and its memberships"
    )
    parser.add_argument("name", metavar="NAME")

    parser = add_command(
        group,
        "rename",
        _rename,
        help="rename a local group (this changes its LDAP DN)",
        check=_check_rename,
        json=True,
    )
    parser.add_argument("name", metavar="OLD")
    parser.add_argument("new_name", metavar="NEW")

    parser = add_command(
        group, "add-member", _add_member, help="add a user to a group", json=True
    )
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("username", metavar="USERNAME")

    parser = add_command(
        group,
        "remove-member",
        _remove_member,
        help="remove a user from a group",
        json=True,
    )
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("username", metavar="USERNAME")

    add_command(
        group, "list", _list, help="list every group with its members", json=True
    )

    parser = add_command(group, "show", _show, help="show one group", json=True)
    parser.add_argument("name", metavar="NAME")


def _check_add(args: argparse.Namespace) -> None:
    normalize_group_name(args.name)


def _check_rename(args: argparse.Namespace) -> None:
    normalize_group_name(args.new_name)


async def _add(context: CommandContext, args: argparse.Namespace) -> None:
    name = normalize_group_name(args.name)
    context.begin_change("group.add", name)
    group = await context.directory.add_group(name)
    await context.record_change(f"created {group.id}")

    if args.json:
        write_json(context.stdout, group_to_json(group))
        return
    context.stdout.write(f"Added group {group.name} ({group.id}).\n")


async def _delete(context: CommandContext, args: argparse.Namespace) -> None:
    group = await find_group(context, args.name)
    context.begin_change("group.delete", group.name)
    await context.directory.delete_group(group.id)
    await context.record_change(f"deleted {group.id}")
    context.stdout.write(f"Deleted group {group.name}.\n")


async def _rename(context: CommandContext, args: argparse.Namespace) -> None:
    group = await find_group(context, args.name)
    context.begin_change("group.rename", group.name)
    renamed = await context.directory.rename_group(group.id, args.new_name)
    await context.record_change(f"renamed {group.name} to {renamed.name}")

    if args.json:
        write_json(context.stdout, group_to_json(renamed))
        return
    context.stdout.write(f"Renamed group {group.name} to {renamed.name}.\n")


async def _add_member(context: CommandContext, args: argparse.Namespace) -> None:
    group = await find_group(context, args.name)
    user = await find_user(context, args.username)
    context.begin_change("group.add_member", group.name)
    updated = await context.directory.add_member(group.id, user.id)
    await context.record_change(f"added {user.username}")

    if args.json:
        write_json(context.stdout, group_to_json(updated))
        return
    context.stdout.write(f"Added {user.username} to group {group.name}.\n")


async def _remove_member(context: CommandContext, args: argparse.Namespace) -> None:
    group = await find_group(context, args.name)
    user = await find_user(context, args.username)
    context.begin_change("group.remove_member", group.name)
    updated = await context.directory.remove_member(group.id, user.id)
    await context.record_change(f"removed {user.username}")

    if args.json:
        write_json(context.stdout, group_to_json(updated))
        return
    context.stdout.write(f"Removed {user.username} from group {group.name}.\n")


async def _list(context: CommandContext, args: argparse.Namespace) -> None:
    groups = await context.directory.list_groups()
    if args.json:
        write_json(context.stdout, [group_to_json(group) for group in groups])
        return
    write_table(
        context.stdout,
        ("NAME", "SOURCE", "MEMBERS"),
        (
            (group.name, group.source.value, sorted(group.member_usernames))
            for group in groups
        ),
    )


async def _show(context: CommandContext, args: argparse.Namespace) -> None:
    group = await find_group(context, args.name)
    record = group_to_json(group)
    if args.json:
        write_json(context.stdout, record)
        return
    record["gid_number"] = group.gid_number
    write_record(context.stdout, record)
