"""
A SQLite connection used from one dedicated thread.

The session store and the client registry keep their tables in the
directory's database file. Each gets its own connection, owned by a
one-thread pool, so every statement runs off the reactor and in order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

__all__ = ["Database"]

_T = TypeVar("_T")


class Database:
    """
    Runs functions that take a L{sqlite3.Connection} in a dedicated thread.

    Each call of L{run} is one transaction: committed when the function
    returns, rolled back when it raises.
    """

    def __init__(self, path: Path | str, reactor: IReactorFromThreads, name: str):
        self._path = str(path)
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)
        self._connection: sqlite3.Connection | None = None
        self._pool.start()

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self._path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA busy_timeout = 30000")
            connection.execute("PRAGMA synchronous = NORMAL")
            self._connection = connection
        return self._connection

    def _transaction(
        self, function: Callable[[sqlite3.Connection], _T], write: bool
    ) -> _T:
        connection = self._connect()
        # IMMEDIATE takes the write lock at the start, so read-then-write
        # steps (code redemption, token rotation) are atomic across
        # processes sharing the file.
        connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = function(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    def run(
        self, function: Callable[[sqlite3.Connection], _T], *, write: bool = True
    ) -> Deferred[_T]:
        """
        Call C{function} with the connection in the database thread, inside
        a transaction; C{write=False} for one that only reads.
        """
        return deferToThreadPool(
            self._reactor, self._pool, self._transaction, function, write
        )

    def close(self) -> None:
        """
        Wait for queued calls, close the connection and stop the thread.
        """
        self._pool.stop()
        if self._connection is not None:
            self._connection.close()
            self._connection = None
