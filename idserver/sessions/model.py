"""
Records kept by an L{idserver.interfaces.ISessionStore}.

Secrets handed to browsers and clients (cookie values, codes, tokens) are
never stored: each record is keyed by the SHA-256 of its secret, see
L{secret_key}. Times are POSIX timestamps in seconds.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

__all__ = [
    "AccessToken",
    "AuthorizationCode",
    "BrowserSession",
    "Grant",
    "RefreshToken",
    "SessionState",
    "new_secret",
    "secret_key",
]


def new_secret() -> str:
    """
    Generate a secret for a cookie, code or token: 256 random bits,
    base64url without padding.
    """
    return secrets.token_urlsafe(32)


def secret_key(secret: str) -> str:
    """
    Return the storage key of C{secret}: its SHA-256 in hex.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class SessionState:
    """
    The stages of a browser session.

    @cvar anonymous: no user yet; contains the CSRF token of the login form.
    @cvar totp: the password was right, a TOTP code is still needed.
    @cvar enrol: the password was right and 2FA is mandatory, but the user
        has not enrolled TOTP yet.
    @cvar active: signed in.
    """

    anonymous = "anonymous"
    totp = "totp"
    enrol = "enrol"
    active = "active"

    all = frozenset({anonymous, totp, enrol, active})


@dataclass(frozen=True)
class BrowserSession:
    """
    A browser session, identified by a cookie.

    @ivar key: L{secret_key} of the cookie value.
    @ivar sid: a public random id: the C{sid} claim of ID tokens and the
        handle the dashboard shows and revokes.
    @ivar user_id: C{None} while L{state} is C{anonymous}.
    @ivar state: one of L{SessionState}.
    @ivar csrf_token: the token every form of this session must carry.
    @ivar amr: the authentication methods of the login (C{pwd}, C{otp}).
    @ivar auth_time: when the user authenticated, or C{None}.
    @ivar last_seen: the last request made with this session.
    @ivar expires_at: the absolute end of the session, whatever its use.
    @ivar address: the client address at login, for the dashboard.
    @ivar user_agent: the C{User-Agent} at login, for the dashboard.
    """

    key: str
    sid: str
    user_id: str | None
    state: str
    csrf_token: str
    amr: tuple[str, ...]
    auth_time: float | None
    created_at: float
    last_seen: float
    expires_at: float
    address: str | None = None
    user_agent: str = ""


@dataclass(frozen=True)
class AuthorizationCode:
    """
    An authorization code, from its issue until its exchange.

    @ivar key: L{secret_key} of the code.
    @ivar code_challenge: the PKCE S256 challenge, or C{None}.
    @ivar sid: the L{BrowserSession.sid} of the login.
    @ivar used_at: when the code was exchanged, or C{None}.
    @ivar grant_id: the grant its exchange created, once used.
    """

    key: str
    client_id: str
    user_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    nonce: str | None
    code_challenge: str | None
    sid: str
    auth_time: float
    amr: tuple[str, ...]
    issued_at: float
    expires_at: float
    used_at: float | None = None
    grant_id: str | None = None


@dataclass(frozen=True)
class Grant:
    """
    An app session: what a user granted one client with one login, shared
    by the chain of refresh tokens and the access tokens issued from it.

    @ivar id: a random id, shown and revoked through the dashboard.
    @ivar sid: the L{BrowserSession.sid} of the login that created it.
    @ivar auth_time: the time of that login.
    @ivar last_used: the last token issued from this grant.
    """

    id: str
    user_id: str
    client_id: str
    scope: tuple[str, ...]
    sid: str
    auth_time: float
    amr: tuple[str, ...]
    created_at: float
    last_used: float


@dataclass(frozen=True)
class RefreshToken:
    """
    One refresh token of a grant.

    @ivar key: L{secret_key} of the token.
    @ivar rotated_at: when a refresh used this token and replaced it, or
        C{None} while it is the current one.
    """

    key: str
    grant_id: str
    client_id: str
    issued_at: float
    expires_at: float
    rotated_at: float | None = None


@dataclass(frozen=True)
class AccessToken:
    """
    An access token for UserInfo.

    @ivar key: L{secret_key} of the token.
    """

    key: str
    grant_id: str
    client_id: str
    user_id: str
    scope: tuple[str, ...]
    issued_at: float
    expires_at: float
