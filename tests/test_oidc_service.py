"""
The provider inside the daemon: keys created at start, routes served on
the HTTP listener, housekeeping of the session store.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from idserver.config import load_config
from idserver.oidc.service import MAINTENANCE_INTERVAL, HousekeepingService
from idserver.service import ListenerService, build_service
from idserver.sessions.maintenance import SessionMaintenance, end_sessions_without_2fa
from idserver.sessions.sqlite import SQLiteSessionStore
from idserver.sessions.testing import make_session
from tests.configfiles import CHEAP_PASSWORDS, write_config
from tests.oidc_fixtures import open_test_directory
from tests.test_tap import get_reactor, https_client


class DaemonTests(TestCase):
    """
    The daemon serves the provider at the configured issuer.
    """

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        (self.directory / "data").mkdir(parents=True)
        path = write_config(
            self.directory,
            CHEAP_PASSWORDS + "[oidc]\nid_token_lifetime = 600\n",
            http='listen = ["ssl:0:interface=127.0.0.1"]',
        )
        self.config = load_config(path)
        self.service = build_service(self.config, reactor=get_reactor())
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)
        listener = next(c for c in self.service if isinstance(c, ListenerService))
        assert listener.port is not None
        self.base = f"https://127.0.0.1:{listener.port.getHost().port}"
        self.client = https_client(self.directory / "certificate.pem")

    async def _get(self, path: str) -> tuple[int, Any]:
        response = await self.client.get(self.base + path)
        return response.code, json.loads(await treq.content(response))

    async def test_discovery(self) -> None:
        """
        The discovery document names the configured issuer, not the address
        the request went to.
        """
        code, document = await self._get("/.well-known/openid-configuration")
        self.assertEqual(code, 200)
        self.assertEqual(document["issuer"], "https://id.example.com/openid")
        self.assertEqual(
            document["token_endpoint"], "https://id.example.com/openid/token"
        )

    async def test_keys_created(self) -> None:
        """
        Starting creates the signing keys as private files and publishes
        them.
        """
        keys = self.directory / "data" / "keys"
        pems = sorted(keys.glob("*.pem"))
        self.assertEqual(len(pems), 2)
        for pem in pems:
            self.assertEqual(stat.S_IMODE(os.stat(pem).st_mode), 0o600)
        code, jwks = await self._get("/openid/jwks")
        self.assertEqual(code, 200)
        self.assertEqual({k["kid"] for k in jwks["keys"]}, {p.stem for p in pems})

    async def test_login_page_and_health(self) -> None:
        """
        The login page and the health check share the listener.
        """
        response = await self.client.get(self.base + "/login")
        self.assertEqual(response.code, 200)
        self.assertIn(b"<form", await treq.content(response))
        code, body = await self._get("/healthz")
        self.assertEqual(body["status"], "ok")


class HousekeepingTests(TestCase):
    """
    The periodic purge and the mandatory 2FA sweep.
    """

    def setUp(self) -> None:
        self.directory = open_test_directory(self)
        self.store = SQLiteSessionStore(self.directory.database, self.directory)

    async def test_sweep_ends_sessions_without_2fa(self) -> None:
        """
        With mandatory 2FA, users without 2FA lose their sessions; users
        with 2FA keep them; nothing happens while 2FA is optional.
        """
        alice = await self.directory.add_user("alice", "alice@example.com")
        bob = await self.directory.add_user("bob", "bob@example.com")
        await self.directory.enable_totp(bob.id)
        alice_session = make_session(alice.id)
        bob_session = make_session(bob.id)
        await self.store.add_session(alice_session)
        await self.store.add_session(bob_session)

        self.assertEqual(await end_sessions_without_2fa(self.directory, self.store), [])
        await self.directory.set_setting("mandatory_2fa", True)
        self.assertEqual(
            await end_sessions_without_2fa(self.directory, self.store), ["alice"]
        )
        self.assertIsNone(await self.store.get_session(alice_session.key))
        self.assertIsNotNone(await self.store.get_session(bob_session.key))

    async def test_timer(self) -> None:
        """
        The first run comes one interval after the start and purges expired
        sessions; stopping waits for it.
        """
        clock = Clock()
        clock.advance(2_000_000_000)
        expired = make_session(expires_at=clock.seconds() - 1)
        await self.store.add_session(expired)
        service = HousekeepingService(
            SessionMaintenance(self.directory, self.store, clock), clock
        )
        service.startService()
        self.assertIsNotNone(await self.store.get_session(expired.key))
        clock.advance(MAINTENANCE_INTERVAL)
        for _ in range(50):
            if await self.store.get_session(expired.key) is None:
                break
            await defer.Deferred.fromCoroutine(_tick())
        self.assertIsNone(await self.store.get_session(expired.key))
        await service.stopService()


async def _tick() -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    await deferLater(reactor, 0.01, lambda: None)
