"""
The output formats of C{idserver-admin} for users, groups and settings:
JSON documents for scripts and aligned text for people.

The JSON field names and shapes are part of the command line's contract;
scripts parse them, so fields are only ever added.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from idserver.model import Group, User

__all__ = [
    "format_timestamp",
    "group_to_json",
    "user_to_json",
    "write_json",
    "write_record",
    "write_table",
]


def format_timestamp(value: datetime | None) -> str | None:
    """
    Format a timestamp as RFC 3339 in UTC with a C{Z} suffix, to the second.

    A naive C{datetime} is taken to be UTC already, since the directory
    stores UTC.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_to_json(user: User) -> dict[str, Any]:
    """
    Convert a user to its JSON object; C{groups} lists group names.
    """
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "fallback_email": user.fallback_email,
        "display_name": user.display_name,
        "role": _enum_value(user.role),
        "active": user.active,
        "source": _enum_value(user.source),
        "totp_enabled": user.totp_enabled,
        "groups": sorted(user.groups),
        "created_at": format_timestamp(user.created_at),
        "updated_at": format_timestamp(user.updated_at),
    }


def group_to_json(group: Group) -> dict[str, Any]:
    """
    Convert a group to its JSON object; C{members} lists usernames.
    """
    return {
        "id": group.id,
        "name": group.name,
        "source": _enum_value(group.source),
        "members": sorted(group.member_usernames),
    }


def write_json(stream: IO[str], value: Any) -> None:
    """
    Write C{value} as one JSON document followed by a newline.
    """
    stream.write(json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False))
    stream.write("\n")


def format_value(value: Any) -> str:
    """
    Format one field for text output: booleans as C{true}/C{false} (as they
    are typed on the command line), C{None} as C{-}, sequences joined with
    commas.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "-"
    return str(value)


def write_record(stream: IO[str], record: Mapping[str, Any]) -> None:
    """
    Write one object as C{key: value} lines with the values aligned.
    """
    width = max((len(key) for key in record), default=0)
    for key, value in record.items():
        stream.write(f"{key + ':':<{width + 1}} {format_value(value)}\n")


def write_table(
    stream: IO[str], headers: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """
    Write rows as columns separated by two spaces, under a header line.
    """
    cells = [list(headers)] + [[format_value(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        line = "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        )
        stream.write(line.rstrip() + "\n")


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)
