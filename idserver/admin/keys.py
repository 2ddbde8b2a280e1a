"""
The C{idserver-admin keys ...} commands, and the step of C{init} that
creates the signing keys.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from idserver.admin.command import CommandContext, add_command, add_group
from idserver.admin.output import write_json, write_table
from idserver.oidc.keys import KeyStore
from idserver.oidc.site import key_store

__all__ = ["create_keys", "register"]


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """
    Add C{keys} and its subcommands.
    """
    keys = add_group(commands, "keys", help="manage the ID token signing keys")
    add_command(
        keys,
        "rotate",
        _rotate,
        help=(
            "create new signing keys; the old ones stay published until the"
            " ID tokens they signed have expired"
        ),
        json=True,
    )
    add_command(keys, "list", _list, help="list the published keys", json=True)


def _store(context: CommandContext) -> KeyStore:
    return key_store(context.config, context.reactor)


def _time(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")


async def create_keys(context: CommandContext) -> list[str]:
    """
    Create the signing keys that are missing (an C{init} step).
    """
    store = _store(context)
    created = store.ensure_keys()
    if not created:
        return [f"Signing keys in {store.directory} exist."]
    return [f"Created signing key {kid} in {store.directory}." for kid in created]


async def _rotate(context: CommandContext, args: argparse.Namespace) -> None:
    store = _store(context)
    context.begin_change("keys.rotate", None)
    created = store.rotate()
    await context.record_change("new keys " + ", ".join(created))
    if args.json:
        write_json(context.stdout, {"created": created})
        return
    for kid in created:
        context.stdout.write(f"Created signing key {kid}.\n")
    context.stdout.write(
        "A running daemon uses the new keys at once; the retired keys stay"
        " published until the ID tokens they signed have expired.\n"
    )


async def _list(context: CommandContext, args: argparse.Namespace) -> None:
    keys = _store(context).keys()
    records = [
        {
            "kid": key.kid,
            "alg": key.alg,
            "created_at": _time(key.created_at),
            "retired_at": _time(key.retired_at),
        }
        for key in keys
    ]
    if args.json:
        write_json(context.stdout, records)
        return
    write_table(
        context.stdout,
        ("KID", "ALG", "CREATED", "RETIRED"),
        ((r["kid"], r["alg"], r["created_at"], r["retired_at"]) for r in records),
    )
