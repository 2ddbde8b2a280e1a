"""
Tests for the SQLite session store.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from idserver.sessions.sqlite import SQLiteSessionStore
from idserver.sessions.testing import SessionStoreContract
from tests.oidc_fixtures import open_test_directory


class SQLiteSessionStoreTests(SessionStoreContract, TestCase):
    """
    The SQLite session store meets the session store contract.
    """

    def setUp(self) -> None:
        directory = open_test_directory(self)
        self.store = SQLiteSessionStore(directory.database, directory)
