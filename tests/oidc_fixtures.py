"""
Shared fixtures of the OpenID Connect tests: a real SQLite directory with
cheap argon2 parameters.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import TestCase

from idserver.directory.sqlite import SQLiteDirectory, open_directory
from idserver.passwords import Argon2Hasher

__all__ = ["open_test_directory"]


def open_test_directory(test: TestCase, clock: object = None) -> SQLiteDirectory:
    """
    Open a new SQLite directory in a temporary folder of C{test}, with all
    migrations applied and a fast hasher; both are closed at cleanup.
    """
    from twisted.internet import reactor

    folder = Path(test.mktemp())
    folder.mkdir(parents=True)
    hasher = Argon2Hasher(reactor, time_cost=1, memory_cost=8, parallelism=1)
    hasher.start()
    test.addCleanup(hasher.stop)
    directory = open_directory(
        str(folder / "idserver.db"),
        reactor=reactor,
        hasher=hasher,
        clock=clock,  # type: ignore[arg-type]
    )
    test.addCleanup(directory.close)
    return directory
