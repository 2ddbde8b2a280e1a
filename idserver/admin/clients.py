"""
The C{idserver-admin client ...} commands: register and manage OpenID
Connect clients.
"""

from __future__ import annotations

import argparse
from typing import Any

from idserver.admin.command import CommandContext, add_command, add_group, find_group
from idserver.admin.output import write_json, write_record, write_table
from idserver.errors import NotFoundError
from idserver.oidc.clients import SQLiteClientRegistry
from idserver.oidc.model import SIGNING_ALGORITHMS, Client

__all__ = ["client_to_json", "register"]


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """
    Add C{client} and its subcommands.
    """
    client = add_group(commands, "client", help="manage OpenID Connect clients")

    parser = add_command(
        client,
        "add",
        _add,
        help="register a client; prints its id and, unless public, its secret",
        json=True,
    )
    parser.add_argument("--name", required=True, help="the name users see")
    parser.add_argument(
        "--redirect-uri",
        dest="redirect_uris",
        action="append",
        required=True,
        metavar="URI",
        help="a redirect URI, matched exactly (repeat for several)",
    )
    _add_common_options(parser)
    parser.add_argument(
        "--public",
        action="store_true",
        help="a client without a secret (native or browser app); it must use PKCE",
    )

    parser = add_command(client, "list", _list, help="list the clients", json=True)

    parser = add_command(client, "show", _show, help="show one client", json=True)
    parser.add_argument("client_id", metavar="CLIENT_ID")

    parser = add_command(
        client,
        "set",
        _set,
        help="change a client; list options replace the whole list",
        json=True,
    )
    parser.add_argument("client_id", metavar="CLIENT_ID")
    parser.add_argument("--name", help="the name users see")
    parser.add_argument(
        "--redirect-uri",
        dest="redirect_uris",
        action="append",
        metavar="URI",
        help="a redirect URI (repeat for several; replaces the list)",
    )
    _add_common_options(parser)
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--public",
        dest="public",
        action="store_const",
        const=True,
        default=None,
        help="make it a public client (its secret is deleted)",
    )
    kind.add_argument(
        "--confidential",
        dest="public",
        action="store_const",
        const=False,
        help="make it a confidential client (a secret is generated)",
    )
    parser.add_argument(
        "--new-secret",
        action="store_true",
        help="replace the secret of a confidential client; prints it once",
    )
    parser.add_argument(
        "--no-allowed-groups",
        action="store_true",
        help="let every user use the client",
    )

    parser = add_command(client, "delete", _delete, help="delete a client")
    parser.add_argument("client_id", metavar="CLIENT_ID")


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--post-logout-redirect-uri",
        dest="post_logout_redirect_uris",
        action="append",
        metavar="URI",
        help="where the client may send users after logout (repeat for several)",
    )
    parser.add_argument(
        "--launch-url",
        metavar="URL",
        help="the link to the app shown on the dashboard; empty to remove",
    )
    parser.add_argument(
        "--signing-alg",
        choices=SIGNING_ALGORITHMS,
        help="the ID token signature algorithm (default RS256)",
    )
    parser.add_argument(
        "--allowed-group",
        dest="allowed_groups",
        action="extend",
        nargs="+",
        metavar="GROUP",
        help="only members of these groups (and admins) may use the client",
    )


def _registry(context: CommandContext) -> SQLiteClientRegistry:
    return SQLiteClientRegistry(context.directory.database)


async def _group_ids(context: CommandContext, names: list[str] | None) -> list[str]:
    if names is None:
        return []
    return [(await find_group(context, name)).id for name in names]


async def client_to_json(
    context: CommandContext, client: Client, secret: str | None = None
) -> dict[str, Any]:
    """
    Return the JSON form of a client, with group names for its allowed
    groups (groups deleted since are left out), and the secret when given.
    """
    groups = {group.id: group.name for group in await context.directory.list_groups()}
    record: dict[str, Any] = {"client_id": client.client_id}
    if secret is not None:
        record["client_secret"] = secret
    record.update(
        name=client.name,
        redirect_uris=list(client.redirect_uris),
        post_logout_redirect_uris=list(client.post_logout_redirect_uris),
        launch_url=client.launch_url,
        signing_alg=client.signing_alg,
        public=client.public,
        allowed_groups=sorted(
            groups[group_id]
            for group_id in client.allowed_group_ids
            if group_id in groups
        ),
    )
    return record


async def _find(context: CommandContext, client_id: str) -> Client:
    client = await _registry(context).get_client(client_id)
    if client is None:
        raise NotFoundError(f"There is no client {client_id!r}.", "client_id")
    return client


async def _print(
    context: CommandContext,
    args: argparse.Namespace,
    client: Client,
    secret: str | None,
) -> None:
    record = await client_to_json(context, client, secret)
    if args.json:
        write_json(context.stdout, record)
        return
    write_record(context.stdout, record)
    if secret is not None:
        context.stdout.write(
            "The client secret is shown only now; store it in the client's settings.\n"
        )


async def _add(context: CommandContext, args: argparse.Namespace) -> None:
    context.begin_change("client.add", args.name)
    group_ids = await _group_ids(context, args.allowed_groups)
    client, secret = await _registry(context).add_client(
        args.name,
        args.redirect_uris,
        post_logout_redirect_uris=args.post_logout_redirect_uris,
        launch_url=args.launch_url or None,
        signing_alg=args.signing_alg or "RS256",
        public=args.public,
        allowed_group_ids=group_ids,
    )
    await context.record_change(f"created {client.client_id}")
    await _print(context, args, client, secret)


async def _list(context: CommandContext, args: argparse.Namespace) -> None:
    clients = await _registry(context).list_clients()
    if args.json:
        write_json(context.stdout, [await client_to_json(context, c) for c in clients])
        return
    write_table(
        context.stdout,
        ("CLIENT_ID", "NAME", "PUBLIC", "SIGNING", "REDIRECT_URIS"),
        (
            (c.client_id, c.name, c.public, c.signing_alg, " ".join(c.redirect_uris))
            for c in clients
        ),
    )


async def _show(context: CommandContext, args: argparse.Namespace) -> None:
    await _print(context, args, await _find(context, args.client_id), None)


async def _set(context: CommandContext, args: argparse.Namespace) -> None:
    client = await _find(context, args.client_id)
    context.begin_change("client.set", client.client_id)
    if args.no_allowed_groups:
        group_ids: list[str] | None = []
    elif args.allowed_groups is not None:
        group_ids = await _group_ids(context, args.allowed_groups)
    else:
        group_ids = None
    updated, secret = await _registry(context).update_client(
        client.client_id,
        name=args.name,
        redirect_uris=args.redirect_uris,
        post_logout_redirect_uris=args.post_logout_redirect_uris,
        launch_url=args.launch_url,
        signing_alg=args.signing_alg,
        public=args.public,
        allowed_group_ids=group_ids,
        new_secret=args.new_secret,
    )
    detail = "new secret" if secret is not None else "updated"
    await context.record_change(detail)
    await _print(context, args, updated, secret)


async def _delete(context: CommandContext, args: argparse.Namespace) -> None:
    client = await _find(context, args.client_id)
    context.begin_change("client.delete", client.client_id)
    await _registry(context).delete_client(client.client_id)
    await context.record_change(f"deleted {client.name!r}")
    context.stdout.write(f"Deleted client {client.name} ({client.client_id}).\n")
