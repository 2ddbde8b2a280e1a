"""
A contract test mixin for L{idserver.interfaces.ISessionStore}: every store
(SQLite, Redis) runs the same tests.
"""

from __future__ import annotations

from typing import Any

from zope.interface.verify import verifyObject

from idserver.interfaces import ISessionStore
from idserver.sessions.model import (
    AccessToken,
    AuthorizationCode,
    BrowserSession,
    Grant,
    RefreshToken,
    SessionState,
    new_secret,
    secret_key,
)

__all__ = ["SessionStoreContract", "make_session"]

NOW = 1_700_000_000.0


def make_session(user_id: str | None = "uid-1", **changes: Any) -> BrowserSession:
    """
    Build a session record with fresh random secrets.
    """
    fields: dict[str, Any] = dict(
        key=secret_key(new_secret()),
        sid=new_secret(),
        user_id=user_id,
        state=SessionState.active if user_id else SessionState.anonymous,
        csrf_token=new_secret(),
        amr=("pwd", "otp"),
        auth_time=NOW,
        created_at=NOW,
        last_seen=NOW,
        expires_at=NOW + 3600,
        address="192.0.2.1",
        user_agent="Test/1.0",
    )
    fields.update(changes)
    return BrowserSession(**fields)


def _code(**changes: Any) -> AuthorizationCode:
    fields: dict[str, Any] = dict(
        key=secret_key(new_secret()),
        client_id="cid-1",
        user_id="uid-1",
        redirect_uri="https://app.example/cb",
        scope=("openid", "email"),
        nonce="n-1",
        code_challenge="c" * 43,
        sid="sid-1",
        auth_time=NOW,
        amr=("pwd",),
        issued_at=NOW,
        expires_at=NOW + 60,
    )
    fields.update(changes)
    return AuthorizationCode(**fields)


def _grant(**changes: Any) -> Grant:
    fields: dict[str, Any] = dict(
        id=new_secret(),
        user_id="uid-1",
        client_id="cid-1",
        scope=("openid", "profile"),
        sid="sid-1",
        auth_time=NOW,
        amr=("pwd",),
        created_at=NOW,
        last_used=NOW,
    )
    fields.update(changes)
    return Grant(**fields)


def _refresh(grant: Grant, **changes: Any) -> RefreshToken:
    fields: dict[str, Any] = dict(
        key=secret_key(new_secret()),
        grant_id=grant.id,
        client_id=grant.client_id,
        issued_at=NOW,
        expires_at=NOW + 86400,
    )
    fields.update(changes)
    return RefreshToken(**fields)


def _access(grant: Grant, **changes: Any) -> AccessToken:
    fields: dict[str, Any] = dict(
        key=secret_key(new_secret()),
        grant_id=grant.id,
        client_id=grant.client_id,
        user_id=grant.user_id,
        scope=grant.scope,
        issued_at=NOW,
        expires_at=NOW + 3600,
    )
    fields.update(changes)
    return AccessToken(**fields)


class SessionStoreContract:
    """
    Tests every L{ISessionStore} must pass. Mix into a L{TestCase} that sets
    C{self.store} in C{setUp} to a new, empty store.
    """

    store: Any

    def test_interface(self: Any) -> None:
        """
        The store provides L{ISessionStore}.
        """
        self.assertTrue(verifyObject(ISessionStore, self.store))

    async def test_session_round_trip(self: Any) -> None:
        """
        A stored session comes back equal, and an unknown key gives None.
        """
        session = make_session()
        await self.store.add_session(session)
        self.assertEqual(await self.store.get_session(session.key), session)
        self.assertIsNone(await self.store.get_session(secret_key("nothing")))

    async def test_anonymous_session(self: Any) -> None:
        """
        A session without a user or login time round-trips.
        """
        session = make_session(None, amr=(), auth_time=None, address=None)
        await self.store.add_session(session)
        self.assertEqual(await self.store.get_session(session.key), session)

    async def test_touch_session(self: Any) -> None:
        """
        Touching a session records the time of the last request.
        """
        session = make_session()
        await self.store.add_session(session)
        await self.store.touch_session(session.key, NOW + 10)
        stored = await self.store.get_session(session.key)
        self.assertEqual(stored.last_seen, NOW + 10)

    async def test_delete_session(self: Any) -> None:
        """
        A deleted session is gone; others stay.
        """
        first, second = make_session(), make_session()
        await self.store.add_session(first)
        await self.store.add_session(second)
        await self.store.delete_session(first.key)
        self.assertIsNone(await self.store.get_session(first.key))
        self.assertIsNotNone(await self.store.get_session(second.key))

    async def test_delete_session_by_sid(self: Any) -> None:
        """
        A session is deleted by its public id only for its own user.
        """
        session = make_session()
        await self.store.add_session(session)
        self.assertFalse(await self.store.delete_session_by_sid("uid-2", session.sid))
        self.assertIsNotNone(await self.store.get_session(session.key))
        self.assertTrue(await self.store.delete_session_by_sid("uid-1", session.sid))
        self.assertIsNone(await self.store.get_session(session.key))

    async def test_sessions_of(self: Any) -> None:
        """
        The sessions of a user come newest first, without other users'.
        """
        old = make_session(created_at=NOW - 10)
        new = make_session(created_at=NOW)
        await self.store.add_session(old)
        await self.store.add_session(new)
        await self.store.add_session(make_session("uid-2"))
        sessions = await self.store.sessions_of("uid-1")
        self.assertEqual([s.key for s in sessions], [new.key, old.key])

    async def test_redeem_code_once(self: Any) -> None:
        """
        The first redemption returns the unused code; a later one returns it
        marked used, with the grant of the first.
        """
        code = _code()
        await self.store.add_code(code)
        first = await self.store.redeem_code(code.key, "grant-1", NOW + 1)
        self.assertEqual(first, code)
        second = await self.store.redeem_code(code.key, "grant-2", NOW + 2)
        self.assertEqual(second.used_at, NOW + 1)
        self.assertEqual(second.grant_id, "grant-1")

    async def test_redeem_unknown_code(self: Any) -> None:
        """
        An unknown code redeems to None.
        """
        self.assertIsNone(await self.store.redeem_code(secret_key("x"), "grant-1", NOW))

    async def test_code_without_optional_fields(self: Any) -> None:
        """
        A code without nonce or PKCE challenge round-trips.
        """
        code = _code(nonce=None, code_challenge=None)
        await self.store.add_code(code)
        self.assertEqual(await self.store.redeem_code(code.key, "g", NOW), code)

    async def test_grant_round_trip(self: Any) -> None:
        """
        A stored grant comes back equal and is listed for its user.
        """
        grant = _grant()
        await self.store.add_grant(grant)
        self.assertEqual(await self.store.get_grant(grant.id), grant)
        self.assertEqual(await self.store.grants_of("uid-1"), [grant])
        self.assertEqual(await self.store.grants_of("uid-2"), [])

    async def test_refresh_token_round_trip(self: Any) -> None:
        """
        A stored refresh token comes back equal and marks its grant used.
        """
        grant = _grant()
        await self.store.add_grant(grant)
        token = _refresh(grant)
        await self.store.add_refresh_token(token, NOW + 5)
        self.assertEqual(await self.store.get_refresh_token(token.key), token)
        stored = await self.store.get_grant(grant.id)
        self.assertEqual(stored.last_used, NOW + 5)

    async def test_rotate_once(self: Any) -> None:
        """
        A refresh token rotates once; the second attempt changes nothing.
        """
        grant = _grant()
        await self.store.add_grant(grant)
        token = _refresh(grant)
        await self.store.add_refresh_token(token, NOW)
        self.assertTrue(await self.store.rotate_refresh_token(token.key, NOW + 1))
        self.assertFalse(await self.store.rotate_refresh_token(token.key, NOW + 2))
        stored = await self.store.get_refresh_token(token.key)
        self.assertEqual(stored.rotated_at, NOW + 1)

    async def test_one_current_refresh_token(self: Any) -> None:
        """
        Storing a refresh token marks the grant's current one as rotated,
        and leaves tokens of other grants and rotated tokens alone.
        """
        grant, other = _grant(), _grant()
        await self.store.add_grant(grant)
        await self.store.add_grant(other)
        rotated = _refresh(grant, rotated_at=NOW - 5)
        first, second = _refresh(grant), _refresh(grant)
        theirs = _refresh(other)
        await self.store.add_refresh_token(rotated, NOW)
        await self.store.add_refresh_token(theirs, NOW)
        await self.store.add_refresh_token(first, NOW)
        await self.store.add_refresh_token(second, NOW + 1)

        stored = await self.store.get_refresh_token(first.key)
        self.assertEqual(stored.rotated_at, NOW + 1)
        self.assertEqual(await self.store.get_refresh_token(second.key), second)
        self.assertEqual(await self.store.get_refresh_token(theirs.key), theirs)
        stored = await self.store.get_refresh_token(rotated.key)
        self.assertEqual(stored.rotated_at, NOW - 5)

    async def test_tokens_of_missing_grant(self: Any) -> None:
        """
        Tokens of a grant that was revoked (or never stored) are not stored.
        """
        grant = _grant()
        refresh = _refresh(grant)
        access = _access(grant)
        await self.store.add_refresh_token(refresh, NOW)
        await self.store.add_access_token(access)
        self.assertIsNone(await self.store.get_refresh_token(refresh.key))
        self.assertIsNone(await self.store.get_access_token(access.key))

    async def test_access_token_round_trip(self: Any) -> None:
        """
        A stored access token comes back equal until it is deleted.
        """
        grant = _grant()
        await self.store.add_grant(grant)
        token = _access(grant)
        await self.store.add_access_token(token)
        self.assertEqual(await self.store.get_access_token(token.key), token)
        await self.store.delete_access_token(token.key)
        self.assertIsNone(await self.store.get_access_token(token.key))

    async def test_revoke_grant(self: Any) -> None:
        """
        Revoking a grant removes it with its tokens, and leaves other grants.
        """
        grant, other = _grant(), _grant()
        await self.store.add_grant(grant)
        await self.store.add_grant(other)
        refresh, access = _refresh(grant), _access(grant)
        other_refresh = _refresh(other)
        await self.store.add_refresh_token(refresh, NOW)
        await self.store.add_access_token(access)
        await self.store.add_refresh_token(other_refresh, NOW)
        await self.store.revoke_grant(grant.id)
        self.assertIsNone(await self.store.get_grant(grant.id))
        self.assertIsNone(await self.store.get_refresh_token(refresh.key))
        self.assertIsNone(await self.store.get_access_token(access.key))
        self.assertIsNotNone(await self.store.get_refresh_token(other_refresh.key))

    async def test_end_user_sessions(self: Any) -> None:
        """
        Ending a user's sessions removes their sessions, grants and tokens,
        and no one else's.
        """
        mine, theirs = make_session(), make_session("uid-2")
        await self.store.add_session(mine)
        await self.store.add_session(theirs)
        grant = _grant()
        await self.store.add_grant(grant)
        refresh = _refresh(grant)
        await self.store.add_refresh_token(refresh, NOW)
        self.assertEqual(await self.store.user_ids(), {"uid-1", "uid-2"})

        self.assertEqual(await self.store.end_user_sessions("uid-1"), 2)
        self.assertIsNone(await self.store.get_session(mine.key))
        self.assertIsNone(await self.store.get_grant(grant.id))
        self.assertIsNone(await self.store.get_refresh_token(refresh.key))
        self.assertIsNotNone(await self.store.get_session(theirs.key))
        self.assertEqual(await self.store.user_ids(), {"uid-2"})

    async def test_purge_expired(self: Any) -> None:
        """
        Purging removes expired records and grants without refresh tokens,
        and keeps the rest.
        """
        expired, live = make_session(expires_at=NOW - 1), make_session()
        await self.store.add_session(expired)
        await self.store.add_session(live)
        old_code = _code(expires_at=NOW - 1)
        await self.store.add_code(old_code)
        stale = _grant(last_used=NOW - 86400)
        kept = _grant(last_used=NOW - 86400)
        fresh = _grant(last_used=NOW)
        for grant in (stale, kept, fresh):
            await self.store.add_grant(grant)
        await self.store.add_refresh_token(
            _refresh(stale, expires_at=NOW - 1), NOW - 86400
        )
        await self.store.add_refresh_token(_refresh(kept), NOW - 86400)

        self.assertGreaterEqual(await self.store.purge_expired(NOW), 3)
        self.assertIsNone(await self.store.get_session(expired.key))
        self.assertIsNotNone(await self.store.get_session(live.key))
        self.assertIsNone(await self.store.redeem_code(old_code.key, "g", NOW))
        self.assertIsNone(await self.store.get_grant(stale.id))
        self.assertIsNotNone(await self.store.get_grant(kept.id))
        self.assertIsNotNone(await self.store.get_grant(fresh.id))

    async def test_rate_limits(self: Any) -> None:
        """
        Failures are counted per key until reset.
        """
        self.assertEqual(await self.store.failures("user:a", 60.0), 0)
        self.assertEqual(await self.store.add_failure("user:a", 60.0), 1)
        self.assertEqual(await self.store.add_failure("user:a", 60.0), 2)
        self.assertEqual(await self.store.failures("user:b", 60.0), 0)
        await self.store.reset("user:a")
        self.assertEqual(await self.store.failures("user:a", 60.0), 0)
