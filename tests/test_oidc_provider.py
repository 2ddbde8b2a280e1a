"""
Tests of L{idserver.oidc.provider.OpenIDProvider} without HTTP: concurrent
token requests against the real SQLite session store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from idserver.model import User
from idserver.oidc.clients import SQLiteClientRegistry
from idserver.oidc.keys import KeyStore
from idserver.oidc.model import Client
from idserver.oidc.protocol import AuthorizationRequest, TokenError
from idserver.oidc.provider import BearerError, OpenIDProvider
from idserver.sessions.model import (
    BrowserSession,
    SessionState,
    new_secret,
    secret_key,
)
from idserver.sessions.sqlite import SQLiteSessionStore
from tests.oidc_fixtures import open_test_directory

REDIRECT_URI = "https://app.example/callback"


def _form(**values: str) -> dict[str, list[str]]:
    return {name: [value] for name, value in values.items()}


class ProviderConcurrencyTests(TestCase):
    """
    Token requests that race each other leave no usable tokens behind that
    a sequential replay would have revoked.
    """

    def setUp(self) -> Deferred[None]:
        from twisted.internet import reactor

        # The provider's own clock, started at the real time so that it
        # agrees with the timestamps the directory records.
        self.clock = Clock()
        self.clock.advance(reactor.seconds())
        directory = open_test_directory(self)
        self.store = SQLiteSessionStore(directory.database, directory)
        keys_directory = Path(self.mktemp()).absolute() / "keys"
        keys = KeyStore(keys_directory, reactor.seconds, retention=3600)
        keys.ensure_keys()
        self.provider = OpenIDProvider(
            issuer="https://id.example/openid",
            directory=directory,
            sessions=self.store,
            clients=SQLiteClientRegistry(directory.database),
            keys=keys,
            clock=self.clock,
        )
        return Deferred.fromCoroutine(self._add_user_and_client())

    async def _add_user_and_client(self) -> None:
        directory = self.provider.directory
        self.user: User = await directory.add_user("alice", "alice@example.com")
        self.client, _ = await self.provider.clients.add_client("App", [REDIRECT_URI])

    async def _code(self, client: Client) -> str:
        now = self.clock.seconds()
        session = BrowserSession(
            key=new_secret(),
            sid=new_secret(),
            user_id=self.user.id,
            state=SessionState.active,
            csrf_token=new_secret(),
            amr=("pwd",),
            auth_time=now,
            created_at=now,
            last_seen=now,
            expires_at=now + 3600,
        )
        request = AuthorizationRequest(
            client=client,
            redirect_uri=REDIRECT_URI,
            response_mode="query",
            scope=("openid",),
            state=None,
            nonce=None,
            code_challenge=None,
            prompt=frozenset(),
            max_age=None,
            login_hint=None,
        )
        return await self.provider.issue_code(request, session, self.user)

    async def _race(self, form: dict[str, list[str]], count: int) -> list[Any]:
        """
        Start C{count} token requests with C{form} before any of them
        finishes; return each one's response or L{TokenError}.
        """
        requests = [
            Deferred.fromCoroutine(self.provider.token(self.client, form))
            for _ in range(count)
        ]
        results = await DeferredList(requests, consumeErrors=True)
        outcomes = []
        for success, value in results:
            if success:
                outcomes.append(value)
            else:
                value.trap(TokenError)
                outcomes.append(value.value)
        return outcomes

    async def _tokens(self) -> dict[str, Any]:
        code = await self._code(self.client)
        form = _form(
            grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI
        )
        response: dict[str, Any] = await self.provider.token(self.client, form)
        return response

    async def _refresh(self, token: str) -> dict[str, Any] | TokenError:
        form = _form(grant_type="refresh_token", refresh_token=token)
        try:
            response: dict[str, Any] = await self.provider.token(self.client, form)
        except TokenError as e:
            return e
        return response

    async def _access_works(self, response: dict[str, Any]) -> bool:
        try:
            await self.provider.userinfo(response["access_token"])
        except BearerError:
            return False
        return True

    async def test_concurrent_code_replay_revokes(self) -> None:
        """
        Of two exchanges of one code that run at once, one fails as a
        replay, and the tokens the other one received are revoked.
        """
        code = await self._code(self.client)
        form = _form(
            grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI
        )
        outcomes = await self._race(form, 2)

        errors = [o for o in outcomes if isinstance(o, TokenError)]
        responses = [o for o in outcomes if not isinstance(o, TokenError)]
        self.assertEqual([e.error for e in errors], ["invalid_grant"])
        self.assertEqual(len(responses), 1)
        self.assertFalse(await self._access_works(responses[0]))
        refreshed = await self._race(
            _form(
                grant_type="refresh_token",
                refresh_token=responses[0]["refresh_token"],
            ),
            1,
        )
        self.assertIsInstance(refreshed[0], TokenError)

    async def test_concurrent_refreshes_leave_one_token(self) -> None:
        """
        Refreshes with one token that run at once all succeed within the
        grace window, but only one of the refresh tokens they return stays
        current.
        """
        tokens = await self._tokens()
        form = _form(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        outcomes = await self._race(form, 4)

        self.assertFalse([o for o in outcomes if isinstance(o, TokenError)])
        current = []
        for response in outcomes:
            stored = await self.store.get_refresh_token(
                secret_key(response["refresh_token"])
            )
            current.append(stored.rotated_at is None)
        self.assertEqual(current.count(True), 1, current)

    async def test_retry_retires_first_response(self) -> None:
        """
        When a rotated token is used again within the grace window (a retry
        after a lost response), the refresh token of the first response is
        retired too: its use after the grace window revokes the grant.
        """
        tokens = await self._tokens()
        first = await self._refresh(tokens["refresh_token"])
        self.clock.advance(1)
        retried = await self._refresh(tokens["refresh_token"])
        assert not isinstance(first, TokenError)
        assert not isinstance(retried, TokenError)

        self.clock.advance(self.provider.lifetimes.refresh_grace + 1)
        reused = await self._refresh(first["refresh_token"])
        self.assertIsInstance(reused, TokenError)
        after = await self._refresh(retried["refresh_token"])
        self.assertIsInstance(after, TokenError)
        self.assertFalse(await self._access_works(retried))
