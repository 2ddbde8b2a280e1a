"""
Shared fixtures of the OpenID Connect tests: databases, stores, users.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from pathlib import Path

from twisted.internet import defer
from twisted.internet.defer import Deferred
from zope.interface import implementer

from idserver.interfaces import IRateLimitStore

__all__ = ["MemoryRateLimits", "create_database"]


def create_database(directory: str) -> Path:
    """
    Create a SQLite database with the session tables in C{directory}.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "idserver.db"
    import idserver

    migrations = Path(idserver.__file__).parent / "migrations"
    sql = (migrations / "0002_sessions.sql").read_text()
    connection = sqlite3.connect(path)
    connection.executescript(sql)
    connection.close()
    return path


@implementer(IRateLimitStore)
class MemoryRateLimits:
    """
    Rate-limit counters in memory.
    """

    def __init__(self) -> None:
        self._failures: dict[str, list[float]] = defaultdict(list)

    def add_failure(self, key: str, window: float) -> Deferred[int]:
        self._failures[key].append(time.time())
        return self.failures(key, window)

    def failures(self, key: str, window: float) -> Deferred[int]:
        since = time.time() - window
        return defer.succeed(sum(1 for t in self._failures[key] if t > since))

    def reset(self, key: str) -> Deferred[None]:
        self._failures.pop(key, None)
        return defer.succeed(None)
