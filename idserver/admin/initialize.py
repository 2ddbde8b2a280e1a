"""
The C{idserver-admin init} command: create the data directory and the
database, apply pending schema migrations and store the first server name.

Running it again is safe: every step checks what exists and only adds what
is missing.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from typing import Any

from idserver.admin.command import CommandContext, add_command, database_path
from idserver.admin.keys import create_keys

__all__ = ["INIT_STEPS", "InitStep", "register"]

#: One step of C{init} that runs once the database is open. It returns the
#: lines that report what it found or did, and it changes nothing when its
#: work was done by an earlier run.
InitStep = Callable[[CommandContext], Awaitable[list[str]]]

#: The mode of a data directory created by C{init}: it contains the database
#: and the signing keys, so only the daemon's user may enter it.
DATA_DIR_MODE = 0o700


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """
    Add C{init}.
    """
    add_command(
        commands,
        "init",
        _init,
        help=(
            "create the data directory and the database, or apply pending"
            " migrations to an existing one"
        ),
        database="create",
    )


async def _init(context: CommandContext, args: argparse.Namespace) -> None:
    path = database_path(context.config)
    report = [_create_data_dir(str(context.config.server.data_dir))]

    existed = _exists(path)
    context.open_database()
    if existed:
        report.append(f"Database {path} exists; its schema is up to date.")
    else:
        report.append(f"Created database {path}.")

    context.begin_change("server.init", None)
    for step in INIT_STEPS:
        report.extend(await step(context))
    await context.record_change(" ".join(report))

    for line in report:
        context.stdout.write(line + "\n")


def _create_data_dir(data_dir: str) -> str:
    """
    Create the data directory with mode 0700 unless it exists, and describe
    what was done.
    """
    if os.path.isdir(data_dir):
        return f"Data directory {data_dir} exists."
    os.makedirs(data_dir, mode=DATA_DIR_MODE)
    # makedirs applies the umask to the mode; set it exactly.
    os.chmod(data_dir, DATA_DIR_MODE)
    return f"Created data directory {data_dir} (mode 0700)."


def _exists(path: str) -> bool:
    return os.path.exists(path)


async def _store_first_name(context: CommandContext) -> list[str]:
    """
    Store C{[server] name} from the configuration as the C{name} setting,
    unless the setting was stored before (by an earlier C{init}, the
    dashboard or C{settings set}).
    """
    directory = context.directory
    name = context.config.server.name
    if await directory.setting_is_stored("name"):
        current = (await directory.get_settings())["name"]
        return [f"Setting name is already {current!r}; left unchanged."]
    await directory.set_setting("name", name)
    return [f"Stored setting name = {name!r}."]


#: The steps of C{init} after the data directory and the database exist, in
#: order. A feature whose files must exist before the daemon starts (such as
#: signing keys) adds its step here.
INIT_STEPS: tuple[InitStep, ...] = (_store_first_name, create_keys)
