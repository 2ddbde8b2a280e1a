"""
The OpenID Connect provider's decisions that touch storage: issuing and
exchanging codes, refreshing, UserInfo, introspection and revocation.

L{OpenIDProvider} has no HTTP in it: the resource in
L{idserver.oidc.resource} parses requests and formats responses around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from idserver.errors import NotFoundError
from idserver.interfaces import IClientRegistry, IDirectory, ISessionStore
from idserver.model import User
from idserver.oidc.clients import check_client_secret, is_client_id
from idserver.oidc.keys import KeyStore
from idserver.oidc.model import SIGNING_ALGORITHMS, Client
from idserver.oidc.protocol import (
    CLAIMS_SUPPORTED,
    PROMPTS_SUPPORTED,
    SCOPES_SUPPORTED,
    AuthorizationRequest,
    ClientCredentials,
    TokenError,
    hash_half,
    single,
    user_claims,
    verify_pkce,
)
from idserver.sessions.model import (
    AccessToken,
    AuthorizationCode,
    BrowserSession,
    Grant,
    RefreshToken,
    new_secret,
    secret_key,
)
from idserver.sessions.policy import session_end_reason

__all__ = ["BearerError", "Lifetimes", "OpenIDProvider"]


@dataclass(frozen=True)
class Lifetimes:
    """
    Lifetimes of what the provider issues, in seconds.

    @ivar refresh_grace: how long a rotated refresh token still works, for
        a client whose refresh response was lost and that retries.
    """

    code: float = 60.0
    access_token: float = 3600.0
    id_token: float = 3600.0
    refresh_token: float = 30 * 86400.0
    refresh_grace: float = 10.0


class BearerError(Exception):
    """
    A UserInfo request failed (RFC 6750 §3.1).

    @ivar error: C{invalid_request} or C{invalid_token}, or C{None} when the
        request carried no token at all.
    """

    def __init__(self, error: str | None, description: str, status: int) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def _invalid_grant(description: str) -> TokenError:
    return TokenError("invalid_grant", description)


class OpenIDProvider:
    """
    Issues and checks codes and tokens for the registered clients.

    @ivar issuer: C{<public_url>/openid}.
    """

    log = Logger()

    def __init__(
        self,
        *,
        issuer: str,
        directory: IDirectory,
        sessions: ISessionStore,
        clients: IClientRegistry,
        keys: KeyStore,
        clock: IReactorTime,
        lifetimes: Lifetimes | None = None,
    ) -> None:
        self.issuer = issuer
        self.directory = directory
        self.sessions = sessions
        self.clients = clients
        self.keys = keys
        self.clock = clock
        self.lifetimes = lifetimes or Lifetimes()

    # Discovery

    def discovery(self) -> dict[str, Any]:
        """
        Return the provider metadata (OpenID Connect Discovery 1.0 §3, RFC
        8414), listing only what is implemented.
        """
        issuer = self.issuer
        auth_methods = ["client_secret_basic", "client_secret_post", "none"]
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/auth",
            "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/me",
            "jwks_uri": f"{issuer}/jwks",
            "end_session_endpoint": f"{issuer}/session/end",
            "revocation_endpoint": f"{issuer}/token/revocation",
            "introspection_endpoint": f"{issuer}/token/introspection",
            "scopes_supported": list(SCOPES_SUPPORTED),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": auth_methods[:2],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": list(CLAIMS_SUPPORTED),
            "prompt_values_supported": list(PROMPTS_SUPPORTED),
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "authorization_response_iss_parameter_supported": True,
        }

    # Users

    async def groups_of(self, user: User) -> list[tuple[str, str]]:
        """
        Return the ids and names of the user's groups.
        """
        return [(g.id, g.name) for g in await self.directory.groups_of(user.id)]

    def may_use(
        self, user: User, client: Client, groups: Sequence[tuple[str, str]]
    ) -> bool:
        """
        Return whether C{user}, a member of C{groups}, may use C{client}.
        """
        if not client.allowed_group_ids or user.is_admin:
            return True
        return any(group_id in client.allowed_group_ids for group_id, _ in groups)

    async def _usable_user(
        self, user_id: str, auth_time: float, client: Client
    ) -> tuple[User, list[tuple[str, str]]] | str:
        """
        Return the user and groups of a grant or code, or the reason it can
        no longer be used.
        """
        try:
            user = await self.directory.get_user(user_id)
        except NotFoundError:
            return "the user was deleted"
        settings = await self.directory.get_settings()
        reason = session_end_reason(user, auth_time, settings)
        if reason is not None:
            return reason
        groups = await self.groups_of(user)
        if not self.may_use(user, client, groups):
            return "the user is not in the client's allowed groups"
        return user, groups

    # Authorization endpoint

    async def issue_code(
        self, request: AuthorizationRequest, session: BrowserSession, user: User
    ) -> str:
        """
        Store and return a new authorization code for a signed-in user.
        """
        assert session.auth_time is not None
        code = new_secret()
        now = self.clock.seconds()
        await self.sessions.add_code(
            AuthorizationCode(
                key=secret_key(code),
                client_id=request.client.client_id,
                user_id=user.id,
                redirect_uri=request.redirect_uri,
                scope=request.scope,
                nonce=request.nonce,
                code_challenge=request.code_challenge,
                sid=session.sid,
                auth_time=session.auth_time,
                amr=session.amr,
                issued_at=now,
                expires_at=now + self.lifetimes.code,
            )
        )
        return code

    # Client authentication

    async def authenticate_client(
        self, credentials: ClientCredentials, *, allow_public: bool = True
    ) -> Client:
        """
        Find the client of a token, revocation or introspection request and
        check its secret.

        @raise TokenError: C{invalid_client} (401) when the client is
            unknown, the secret is wrong or missing, or a public client
            sends a secret or is not allowed here.
        """
        client = None
        if is_client_id(credentials.client_id):
            client = await self.clients.get_client(credentials.client_id)
        if client is None:
            raise TokenError("invalid_client", "Client authentication failed.", 401)
        if client.public:
            if credentials.secret is not None or not allow_public:
                raise TokenError("invalid_client", "Client authentication failed.", 401)
            return client
        if credentials.secret is None or not check_client_secret(
            client, credentials.secret
        ):
            self.log.info(
                "Client authentication failed for {client_id} ({method})",
                client_id=client.client_id,
                method=credentials.method,
            )
            raise TokenError("invalid_client", "Client authentication failed.", 401)
        return client

    # Token endpoint

    async def token(
        self, client: Client, form: Mapping[str, Sequence[str]]
    ) -> dict[str, Any]:
        """
        Handle a token request of an authenticated client.

        @raise TokenError: the request is invalid.
        """
        grant_type = _parameter(form, "grant_type")
        if grant_type is None:
            raise TokenError("invalid_request", "The grant_type parameter is missing.")
        if grant_type == "authorization_code":
            return await self._exchange_code(client, form)
        if grant_type == "refresh_token":
            return await self._refresh(client, form)
        raise TokenError(
            "unsupported_grant_type",
            "Only authorization_code and refresh_token are supported.",
        )

    async def _exchange_code(
        self, client: Client, form: Mapping[str, Sequence[str]]
    ) -> dict[str, Any]:
        code_value = _parameter(form, "code")
        if code_value is None:
            raise TokenError("invalid_request", "The code parameter is missing.")
        redirect_uri = _parameter(form, "redirect_uri")
        verifier = _parameter(form, "code_verifier")

        now = self.clock.seconds()
        grant_id = new_secret()
        code = await self.sessions.redeem_code(secret_key(code_value), grant_id, now)
        if code is None:
            raise _invalid_grant("The code is invalid.")
        if code.used_at is not None:
            # RFC 6749 §4.1.2: a code used twice revokes what it issued.
            if code.grant_id is not None:
                await self.sessions.revoke_grant(code.grant_id)
            self.log.warn(
                "Authorization code for client {client_id} replayed; revoked"
                " the tokens it issued",
                client_id=code.client_id,
            )
            raise _invalid_grant("The code was already used.")
        if code.client_id != client.client_id:
            raise _invalid_grant("The code was issued to another client.")
        if now >= code.expires_at:
            raise _invalid_grant("The code has expired.")
        if redirect_uri != code.redirect_uri:
            raise _invalid_grant("The redirect_uri differs from the authorization's.")
        if not verify_pkce(verifier, code.code_challenge):
            raise _invalid_grant("The code_verifier does not match.")

        # The grant is stored before anything else is awaited. A concurrent
        # replay of the code then revokes it (the store runs calls in the
        # order they are made), and so do the tokens issued from it below,
        # because every use of a token checks that its grant exists.
        grant = Grant(
            id=grant_id,
            user_id=code.user_id,
            client_id=client.client_id,
            scope=code.scope,
            sid=code.sid,
            auth_time=code.auth_time,
            amr=code.amr,
            created_at=now,
            last_used=now,
        )
        await self.sessions.add_grant(grant)

        usable = await self._usable_user(code.user_id, code.auth_time, client)
        if isinstance(usable, str):
            await self.sessions.revoke_grant(grant.id)
            raise _invalid_grant(f"The grant is no longer valid: {usable}.")
        user, groups = usable
        return await self._issue(client, grant, user, groups, code.nonce, grant.scope)

    async def _refresh(
        self, client: Client, form: Mapping[str, Sequence[str]]
    ) -> dict[str, Any]:
        value = _parameter(form, "refresh_token")
        if value is None:
            raise TokenError(
                "invalid_request", "The refresh_token parameter is missing."
            )
        now = self.clock.seconds()
        key = secret_key(value)
        token = await self.sessions.get_refresh_token(key)
        if token is None or token.client_id != client.client_id:
            raise _invalid_grant("The refresh token is invalid.")
        if now >= token.expires_at:
            raise _invalid_grant("The refresh token has expired.")
        grant = await self.sessions.get_grant(token.grant_id)
        if grant is None:
            raise _invalid_grant("The refresh token was revoked.")

        if token.rotated_at is None and not await self.sessions.rotate_refresh_token(
            key, now
        ):
            # Another request rotated it just now: the retry case below.
            token = RefreshToken(**{**token.__dict__, "rotated_at": now})
        if token.rotated_at is not None and now > token.rotated_at + (
            self.lifetimes.refresh_grace
        ):
            await self.sessions.revoke_grant(grant.id)
            self.log.warn(
                "Refresh token of client {client_id} reused after rotation;"
                " revoked its grant",
                client_id=client.client_id,
            )
            raise _invalid_grant("The refresh token was already used.")

        scope = grant.scope
        requested = _parameter(form, "scope")
        if requested is not None:
            wanted = requested.split()
            if not set(wanted) <= set(grant.scope):
                raise TokenError("invalid_scope", "The scope exceeds what was granted.")
            scope = tuple(s for s in grant.scope if s in wanted)

        usable = await self._usable_user(grant.user_id, grant.auth_time, client)
        if isinstance(usable, str):
            await self.sessions.revoke_grant(grant.id)
            self.log.info(
                "Revoked a grant of client {client_id}: {reason}",
                client_id=client.client_id,
                reason=usable,
            )
            raise _invalid_grant(f"The grant is no longer valid: {usable}.")
        user, groups = usable
        return await self._issue(client, grant, user, groups, None, scope)

    async def _issue(
        self,
        client: Client,
        grant: Grant,
        user: User,
        groups: list[tuple[str, str]],
        nonce: str | None,
        scope: tuple[str, ...],
    ) -> dict[str, Any]:
        now = self.clock.seconds()
        access = new_secret()
        refresh = new_secret()
        await self.sessions.add_access_token(
            AccessToken(
                key=secret_key(access),
                grant_id=grant.id,
                client_id=client.client_id,
                user_id=user.id,
                scope=scope,
                issued_at=now,
                expires_at=now + self.lifetimes.access_token,
            )
        )
        await self.sessions.add_refresh_token(
            RefreshToken(
                key=secret_key(refresh),
                grant_id=grant.id,
                client_id=client.client_id,
                issued_at=now,
                expires_at=now + self.lifetimes.refresh_token,
            ),
            now,
        )
        id_token = self.id_token(client, grant, user, groups, nonce, scope, access)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(self.lifetimes.access_token),
            "refresh_token": refresh,
            "id_token": id_token,
            "scope": " ".join(scope),
        }

    def id_token(
        self,
        client: Client,
        grant: Grant,
        user: User,
        groups: list[tuple[str, str]],
        nonce: str | None,
        scope: tuple[str, ...],
        access_token: str,
    ) -> str:
        """
        Sign an ID token for C{client} with its algorithm.
        """
        now = int(self.clock.seconds())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client.client_id,
            "exp": now + int(self.lifetimes.id_token),
            "iat": now,
            "auth_time": int(grant.auth_time),
            "amr": list(grant.amr),
            "sid": grant.sid,
            "at_hash": hash_half(access_token, client.signing_alg),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(user_claims(user, [name for _, name in groups], scope))
        return self.keys.sign(claims, client.signing_alg)

    # UserInfo

    async def userinfo(self, token: str) -> dict[str, Any]:
        """
        Return the claims an access token grants.

        @raise BearerError: C{invalid_token} when the token is unknown,
            expired or revoked, or its user may no longer use it.
        """
        access = await self.sessions.get_access_token(secret_key(token))
        now = self.clock.seconds()
        if access is None or now >= access.expires_at:
            raise BearerError("invalid_token", "The access token is invalid.", 401)
        grant = await self.sessions.get_grant(access.grant_id)
        client = await self.clients.get_client(access.client_id)
        if grant is None or client is None:
            raise BearerError("invalid_token", "The access token was revoked.", 401)
        usable = await self._usable_user(access.user_id, grant.auth_time, client)
        if isinstance(usable, str):
            await self.sessions.revoke_grant(grant.id)
            raise BearerError("invalid_token", "The access token was revoked.", 401)
        user, groups = usable
        return user_claims(user, [name for _, name in groups], access.scope)

    # Introspection and revocation

    async def introspect(
        self, client: Client, form: Mapping[str, Sequence[str]]
    ) -> dict[str, Any]:
        """
        Describe a token of the calling client (RFC 7662). Tokens of other
        clients, and unknown or expired ones, are C{{"active": false}}.
        """
        value = _parameter(form, "token")
        if value is None:
            raise TokenError("invalid_request", "The token parameter is missing.")
        key = secret_key(value)
        now = self.clock.seconds()
        inactive: dict[str, Any] = {"active": False}

        access = await self.sessions.get_access_token(key)
        if access is not None:
            if access.client_id != client.client_id or now >= access.expires_at:
                return inactive
            grant = await self.sessions.get_grant(access.grant_id)
            if grant is None:
                return inactive
            return await self._describe(
                client,
                grant,
                "access_token",
                access.scope,
                access.issued_at,
                access.expires_at,
            )

        refresh = await self.sessions.get_refresh_token(key)
        if (
            refresh is None
            or refresh.client_id != client.client_id
            or refresh.rotated_at is not None
            or now >= refresh.expires_at
        ):
            return inactive
        grant = await self.sessions.get_grant(refresh.grant_id)
        if grant is None:
            return inactive
        return await self._describe(
            client,
            grant,
            "refresh_token",
            grant.scope,
            refresh.issued_at,
            refresh.expires_at,
        )

    async def _describe(
        self,
        client: Client,
        grant: Grant,
        kind: str,
        scope: tuple[str, ...],
        issued_at: float,
        expires_at: float,
    ) -> dict[str, Any]:
        """
        Describe an active token; C{kind} is C{access_token} or
        C{refresh_token}.
        """
        usable = await self._usable_user(grant.user_id, grant.auth_time, client)
        if isinstance(usable, str):
            return {"active": False}
        user, _ = usable
        return {
            "active": True,
            "scope": " ".join(scope),
            "client_id": client.client_id,
            "username": user.username,
            "sub": user.username,
            "token_type": "Bearer" if kind == "access_token" else kind,
            "exp": int(expires_at),
            "iat": int(issued_at),
            "aud": client.client_id,
            "iss": self.issuer,
        }

    async def revoke(self, client: Client, form: Mapping[str, Sequence[str]]) -> None:
        """
        Revoke a token of the calling client (RFC 7009). Revoking a refresh
        token revokes its grant with every token of it. Unknown tokens and
        tokens of other clients are ignored, and the response is the same
        (RFC 7009 §2.2).
        """
        value = _parameter(form, "token")
        if value is None:
            raise TokenError("invalid_request", "The token parameter is missing.")
        key = secret_key(value)
        access = await self.sessions.get_access_token(key)
        if access is not None:
            if access.client_id == client.client_id:
                await self.sessions.delete_access_token(key)
            return
        refresh = await self.sessions.get_refresh_token(key)
        if refresh is not None and refresh.client_id == client.client_id:
            await self.sessions.revoke_grant(refresh.grant_id)


def _parameter(form: Mapping[str, Sequence[str]], name: str) -> str | None:
    try:
        return single(form, name)
    except ValueError:
        raise TokenError(
            "invalid_request", f"The {name} parameter is repeated."
        ) from None
