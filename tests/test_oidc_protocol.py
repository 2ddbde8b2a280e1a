"""
Tests for the socket-free protocol rules: authorization request
validation, PKCE, client credentials, claims and at_hash.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from idserver.model import Role, Source, User
from idserver.oidc.model import Client
from idserver.oidc.protocol import (
    AuthorizationError,
    ErrorPage,
    TokenError,
    add_query,
    hash_half,
    parse_authorization_request,
    parse_client_credentials,
    user_claims,
    verify_pkce,
)

CLIENT = Client(
    client_id="cid-" + "a" * 32,
    name="App",
    secret_hash="0" * 64,
    redirect_uris=("https://app.example/cb", "http://127.0.0.1/cb"),
    post_logout_redirect_uris=(),
    launch_url=None,
    signing_alg="RS256",
    public=False,
    allowed_group_ids=(),
    created_at=0.0,
    updated_at=0.0,
)
PUBLIC = Client(**{**CLIENT.__dict__, "public": True, "secret_hash": None})
VERIFIER = "dBjftJeZ4CVP-mJ0K5PRhSWiGt8EyVfnk3BDYJ1ea0U"
# BASE64URL(SHA256(VERIFIER)) without padding, computed independently.
CHALLENGE = "yAuIA43je5Nn5zgRUBjkNNmUSLjIqaxR9tqqdQW17Rc"


def params(**values: str | None) -> dict[str, list[str]]:
    base: dict[str, str | None] = {
        "client_id": CLIENT.client_id,
        "redirect_uri": "https://app.example/cb",
        "response_type": "code",
        "scope": "openid profile",
        "state": "xyz",
    }
    base.update(values)
    return {k: [v] for k, v in base.items() if v is not None}


def user(**changes: Any) -> User:
    now = datetime.now(UTC)
    fields: dict[str, Any] = dict(
        id="uid-1",
        username="alice",
        email="alice@example.com",
        fallback_email=None,
        display_name="Alice van Dam",
        role=Role.user,
        active=True,
        source=Source.local,
        external_id=None,
        totp_enabled=False,
        email_verified=True,
        has_password=True,
        uid_number=10000,
        created_at=now,
        updated_at=now,
        password_changed_at=now,
    )
    fields.update(changes)
    return User(**fields)


class AuthorizationRequestTests(SynchronousTestCase):
    """
    Validation of authorization requests.
    """

    def test_valid(self) -> None:
        """
        A valid request keeps the supported scopes in a fixed order and its
        parameters.
        """
        request = parse_authorization_request(
            params(
                scope="email unknown openid", nonce="n", prompt="login", max_age="0"
            ),
            CLIENT,
        )
        self.assertEqual(request.scope, ("openid", "email"))
        self.assertEqual(request.state, "xyz")
        self.assertEqual(request.nonce, "n")
        self.assertEqual(request.prompt, frozenset({"login"}))
        self.assertEqual(request.max_age, 0)
        self.assertEqual(request.response_mode, "query")

    def test_error_pages(self) -> None:
        """
        Unknown clients and bad redirect URIs raise ErrorPage.
        """
        cases = [
            (params(), None),
            (params(client_id=None), CLIENT),
            (params(redirect_uri=None), CLIENT),
            (params(redirect_uri="https://evil.example/cb"), CLIENT),
            ({**params(), "redirect_uri": ["https://app.example/cb"] * 2}, CLIENT),
        ]
        for values, client in cases:
            self.assertRaises(ErrorPage, parse_authorization_request, values, client)

    def test_redirected_errors(self) -> None:
        """
        Other problems raise AuthorizationError with the state and the
        requested response mode.
        """
        error = self.assertRaises(
            AuthorizationError,
            parse_authorization_request,
            params(response_type="token", response_mode="form_post"),
            CLIENT,
        )
        self.assertEqual(error.error, "unsupported_response_type")
        self.assertEqual(error.response_mode, "form_post")
        self.assertEqual(
            error.parameters("https://id.example/openid"),
            {
                "error": "unsupported_response_type",
                "error_description": error.description,
                "state": "xyz",
                "iss": "https://id.example/openid",
            },
        )

    def test_pkce_rules(self) -> None:
        """
        Public clients need an S256 challenge; plain and malformed
        challenges fail.
        """
        with self.assertRaises(AuthorizationError) as raised:
            parse_authorization_request(params(), PUBLIC)
        self.assertEqual(raised.exception.error, "invalid_request")
        ok = parse_authorization_request(
            params(code_challenge=CHALLENGE, code_challenge_method="S256"), PUBLIC
        )
        self.assertEqual(ok.code_challenge, CHALLENGE)
        for method in (None, "plain"):
            self.assertRaises(
                AuthorizationError,
                parse_authorization_request,
                params(code_challenge=CHALLENGE, code_challenge_method=method),
                CLIENT,
            )

    def test_invalid_state_dropped(self) -> None:
        """
        A state with control characters is not echoed.
        """
        error = self.assertRaises(
            AuthorizationError,
            parse_authorization_request,
            params(state="a\nb"),
            CLIENT,
        )
        self.assertIsNone(error.state)


class PKCETests(SynchronousTestCase):
    """
    Checking a code verifier against the stored challenge.
    """

    def test_matching_verifier(self) -> None:
        """
        A verifier matches the challenge computed from it.
        """
        self.assertTrue(verify_pkce(VERIFIER, CHALLENGE))

    def test_mismatches(self) -> None:
        """
        A wrong, missing or unexpected verifier fails; neither passes.
        """
        self.assertFalse(verify_pkce(VERIFIER[:-1] + "A", CHALLENGE))
        self.assertFalse(verify_pkce(None, CHALLENGE))
        self.assertFalse(verify_pkce(VERIFIER, None))
        self.assertFalse(verify_pkce("short", CHALLENGE))
        self.assertTrue(verify_pkce(None, None))

    @given(st.text(alphabet="abcXYZ019-._~", min_size=43, max_size=128))
    def test_any_verifier(self, verifier: str) -> None:
        """
        Every valid verifier matches its own S256 challenge.
        """
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        self.assertTrue(verify_pkce(verifier, challenge))


class ClientCredentialsTests(SynchronousTestCase):
    """
    Reading client credentials from a token request.
    """

    def basic(self, user: str, password: str) -> bytes:
        return b"Basic " + base64.b64encode(f"{user}:{password}".encode())

    def test_basic(self) -> None:
        """
        Basic credentials are form-decoded after base64.
        """
        credentials = parse_client_credentials(self.basic("cid-1", "a%2Bb+c"), {})
        self.assertEqual(
            (credentials.client_id, credentials.secret, credentials.method),
            ("cid-1", "a+b c", "client_secret_basic"),
        )

    def test_post_and_none(self) -> None:
        """
        Form credentials are client_secret_post, an id alone is none.
        """
        post = parse_client_credentials(
            None, {"client_id": ["cid-1"], "client_secret": ["s"]}
        )
        self.assertEqual(post.method, "client_secret_post")
        public = parse_client_credentials(None, {"client_id": ["cid-1"]})
        self.assertEqual((public.secret, public.method), (None, "none"))

    def test_errors(self) -> None:
        """
        Two methods, a malformed header or no id are rejected.
        """
        cases = [
            (self.basic("cid-1", "s"), {"client_secret": ["s"]}, "invalid_request"),
            (self.basic("cid-1", "s"), {"client_id": ["cid-2"]}, "invalid_request"),
            (b"Basic !!!", {}, "invalid_client"),
            (b"Basic " + base64.b64encode(b"nocolon"), {}, "invalid_client"),
            (None, {}, "invalid_client"),
            (None, {"client_id": ["a", "b"]}, "invalid_request"),
        ]
        for header, form, error in cases:
            raised = self.assertRaises(
                TokenError, parse_client_credentials, header, form
            )
            self.assertEqual(raised.error, error, (header, form))


class ClaimsTests(SynchronousTestCase):
    """
    Claims by scope and the at_hash.
    """

    def test_scopes(self) -> None:
        """
        Each scope adds its claims; sub is the username.
        """
        self.assertEqual(user_claims(user(), ["b", "a"], ["openid"]), {"sub": "alice"})
        claims = user_claims(
            user(), ["b", "a"], ["openid", "profile", "email", "groups"]
        )
        self.assertEqual(claims["name"], "Alice van Dam")
        self.assertEqual(claims["given_name"], "Alice")
        self.assertEqual(claims["family_name"], "Dam")
        self.assertEqual(claims["locale"], "en-US")
        self.assertIs(claims["email_verified"], True)
        self.assertEqual(claims["groups"], ["a", "b"])

    def test_names_without_display_name(self) -> None:
        """
        Without a display name every name claim is the username; a one-word
        name is also the family name.
        """
        claims = user_claims(user(display_name=""), [], ["profile"])
        self.assertEqual(
            (claims["name"], claims["given_name"], claims["family_name"]),
            ("alice", "alice", "alice"),
        )
        claims = user_claims(user(display_name="Cher"), [], ["profile"])
        self.assertEqual(
            (claims["given_name"], claims["family_name"]), ("Cher", "Cher")
        )

    def test_email_unverified(self) -> None:
        """
        email_verified is false after a user changed the address.
        """
        claims = user_claims(user(email_verified=False), [], ["email"])
        self.assertIs(claims["email_verified"], False)

    def test_at_hash(self) -> None:
        """
        at_hash is the left half of SHA-256 for RS256 and of SHA-512 for
        EdDSA, base64url without padding.
        """
        token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
        for alg, algorithm in (("RS256", hashlib.sha256), ("EdDSA", hashlib.sha512)):
            digest = algorithm(token.encode()).digest()
            expected = base64.urlsafe_b64encode(digest[: len(digest) // 2])
            self.assertEqual(hash_half(token, alg), expected.rstrip(b"=").decode())

    def test_add_query(self) -> None:
        """
        Parameters are added to an existing query.
        """
        self.assertEqual(
            add_query("https://a/cb", {"code": "x y"}), "https://a/cb?code=x+y"
        )
        self.assertEqual(
            add_query("https://a/cb?k=1", {"state": "s"}), "https://a/cb?k=1&state=s"
        )
