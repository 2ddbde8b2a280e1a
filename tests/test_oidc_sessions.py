"""
Tests for the SQLite session store.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from idserver.sessions.sqlite import SQLiteSessionStore
from idserver.sessions.testing import SessionStoreContract
from tests.oidc_fixtures import MemoryRateLimits, create_database


class SQLiteSessionStoreTests(SessionStoreContract, TestCase):
    """
    The SQLite session store meets the session store contract.
    """

    def setUp(self) -> None:
        from twisted.internet import reactor

        path = create_database(self.mktemp())
        self.store = SQLiteSessionStore(path, reactor, MemoryRateLimits())
        self.addCleanup(self.store.close)
