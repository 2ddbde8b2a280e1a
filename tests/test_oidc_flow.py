"""
The code flow through a real TLS listener, with authlib as the client and
requests driving the login forms.
"""

from __future__ import annotations

import json
from typing import Any

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken
from twisted.trial.unittest import TestCase

from tests.oidc_server import REDIRECT_URI, Browser, OIDCServer, in_thread, query_of

SCOPE = "openid profile email groups"


def fetch(server: OIDCServer, path: str) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    return session.get(server.base_url + path, verify=False, timeout=10)


def authlib_session(
    server: OIDCServer, client_id: str, secret: str | None, **options: Any
) -> OAuth2Session:
    session = OAuth2Session(
        client_id,
        secret,
        scope=options.pop("scope", SCOPE),
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method=options.pop(
            "auth_method", "client_secret_basic" if secret else "none"
        ),
        **options,
    )
    session.trust_env = False
    session.verify = False
    return session


def decode_id_token(
    server: OIDCServer, token: dict[str, Any], client_id: str, nonce: str | None
) -> dict[str, Any]:
    keyset = JsonWebKey.import_key_set(fetch(server, "/openid/jwks").json())
    claims = jwt.decode(
        token["id_token"],
        keyset,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"value": server.issuer}},
        claims_params={
            "nonce": nonce,
            "client_id": client_id,
            "access_token": token["access_token"],
        },
    )
    claims.validate()
    return dict(claims)


class DiscoveryTests(TestCase):
    """
    The discovery document and the key sets.
    """

    def setUp(self) -> None:
        self.server = OIDCServer.start(self)

    async def test_both_paths(self) -> None:
        """
        Both discovery paths serve the same document for the configured
        issuer, listing what is implemented.
        """
        root = await in_thread(fetch, self.server, "/.well-known/openid-configuration")
        nested = await in_thread(
            fetch, self.server, "/openid/.well-known/openid-configuration"
        )
        self.assertEqual(root.status_code, 200)
        self.assertEqual(root.json(), nested.json())
        document = root.json()
        issuer = self.server.issuer
        self.assertEqual(document["issuer"], issuer)
        self.assertEqual(document["authorization_endpoint"], issuer + "/auth")
        self.assertEqual(document["token_endpoint"], issuer + "/token")
        self.assertEqual(document["userinfo_endpoint"], issuer + "/me")
        self.assertEqual(document["jwks_uri"], issuer + "/jwks")
        self.assertEqual(document["end_session_endpoint"], issuer + "/session/end")
        self.assertEqual(document["revocation_endpoint"], issuer + "/token/revocation")
        self.assertEqual(
            document["introspection_endpoint"], issuer + "/token/introspection"
        )
        self.assertEqual(document["response_types_supported"], ["code"])
        self.assertEqual(document["response_modes_supported"], ["query", "form_post"])
        self.assertEqual(
            document["grant_types_supported"], ["authorization_code", "refresh_token"]
        )
        self.assertEqual(document["code_challenge_methods_supported"], ["S256"])
        self.assertEqual(
            document["id_token_signing_alg_values_supported"], ["RS256", "EdDSA"]
        )
        self.assertEqual(
            document["scopes_supported"], ["openid", "profile", "email", "groups"]
        )
        # Every claim an ID token or UserInfo response can carry, and no
        # other.
        self.assertEqual(
            sorted(document["claims_supported"]),
            sorted(
                [
                    *("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce"),
                    *("at_hash", "amr", "sid", "name", "given_name", "family_name"),
                    *("preferred_username", "locale", "email", "email_verified"),
                    "groups",
                ]
            ),
        )
        # consent and select_account are accepted but show no page.
        self.assertEqual(document["prompt_values_supported"], ["none", "login"])

    async def test_jwks(self) -> None:
        """
        The full set has an RSA and an Ed25519 key; the RSA-only set has the
        RSA key; each has kid, use and alg.
        """
        full = (await in_thread(fetch, self.server, "/openid/jwks")).json()["keys"]
        rsa = (await in_thread(fetch, self.server, "/openid/jwks_rsaonly")).json()
        self.assertEqual(sorted(k["kty"] for k in full), ["OKP", "RSA"])
        self.assertEqual([k["kty"] for k in rsa["keys"]], ["RSA"])
        for key in full:
            self.assertEqual(key["use"], "sig")
            self.assertIn(key["alg"], ("RS256", "EdDSA"))
            self.assertTrue(key["kid"])
            self.assertNotIn("d", key)


class CodeFlowTests(TestCase):
    """
    The code flow with PKCE, refresh, UserInfo, introspection and
    revocation, driven by authlib.
    """

    def setUp(self) -> None:
        self.server = OIDCServer.start(self)

    async def _setup(self, **client_options: Any) -> tuple[str, str | None]:
        user = await self.server.add_user("alice", display_name="Alice van Dam")
        self.user = user
        group = await self.server.directory.add_group("staff")
        await self.server.directory.add_member(group.id, user.id)
        client, secret = await self.server.add_client(**client_options)
        return client.client_id, secret

    def _flow(
        self, client_id: str, secret: str | None, **options: Any
    ) -> tuple[OAuth2Session, dict[str, Any], dict[str, Any]]:
        session = authlib_session(self.server, client_id, secret, **options)
        verifier = generate_token(48)
        nonce = generate_token(16)
        url, state = session.create_authorization_url(
            self.server.issuer + "/auth", code_verifier=verifier, nonce=nonce
        )
        location = Browser(self.server).login(url, "alice")
        self.assertTrue(location.startswith(REDIRECT_URI + "?"), location)
        params = query_of(location)
        self.assertEqual(params["state"], state)
        self.assertEqual(params["iss"], self.server.issuer)
        token = session.fetch_token(
            self.server.issuer + "/token",
            authorization_response=location,
            code_verifier=verifier,
        )
        claims = decode_id_token(self.server, token, client_id, nonce)
        return session, token, claims

    async def test_confidential_flow(self) -> None:
        """
        A confidential client with PKCE gets tokens; the ID token and
        UserInfo carry the claims of the requested scopes; refresh rotates
        the refresh token; revocation ends the grant.
        """
        client_id, secret = await self._setup()

        def flow() -> None:
            session, token, claims = self._flow(client_id, secret)
            self.assertEqual(token["token_type"], "Bearer")
            self.assertEqual(token["scope"], SCOPE)
            expected = {
                "sub": "alice",
                "name": "Alice van Dam",
                "given_name": "Alice",
                "family_name": "Dam",
                "preferred_username": "alice",
                "locale": "en-US",
                "email": "alice@example.com",
                "email_verified": True,
                "groups": ["staff"],
            }
            for name, value in expected.items():
                self.assertEqual(claims[name], value, name)
            self.assertEqual(claims["aud"], client_id)
            self.assertEqual(claims["amr"], ["pwd"])
            self.assertIn("sid", claims)
            self.assertIn("auth_time", claims)

            userinfo = session.get(self.server.issuer + "/me")
            self.assertEqual(userinfo.status_code, 200)
            self.assertEqual(userinfo.json(), expected)
            posted = session.post(
                self.server.issuer + "/me",
                data={"access_token": token["access_token"]},
                withhold_token=True,
            )
            self.assertEqual(posted.json(), expected)

            refreshed = session.refresh_token(
                self.server.issuer + "/token", refresh_token=token["refresh_token"]
            )
            self.assertNotEqual(refreshed["refresh_token"], token["refresh_token"])
            self.assertNotEqual(refreshed["access_token"], token["access_token"])
            refreshed_claims = decode_id_token(self.server, refreshed, client_id, None)
            self.assertEqual(refreshed_claims["sub"], "alice")
            self.assertEqual(refreshed_claims["auth_time"], claims["auth_time"])

            introspection = session.post(
                self.server.issuer + "/token/introspection",
                data={"token": refreshed["access_token"]},
                withhold_token=True,
                auth=(client_id, secret),
            ).json()
            self.assertTrue(introspection["active"])
            self.assertEqual(introspection["client_id"], client_id)
            self.assertEqual(introspection["sub"], "alice")

            revoked = session.revoke_token(
                self.server.issuer + "/token/revocation",
                refreshed["refresh_token"],
                token_type_hint="refresh_token",
            )
            self.assertEqual(revoked.status_code, 200)
            after = requests.Session()
            after.trust_env = False
            response = after.get(
                self.server.issuer + "/me",
                headers={"Authorization": "Bearer " + refreshed["access_token"]},
                verify=False,
            )
            self.assertEqual(response.status_code, 401)
            self.assertIn("invalid_token", response.headers["WWW-Authenticate"])
            inactive = session.post(
                self.server.issuer + "/token/introspection",
                data={"token": refreshed["access_token"]},
                withhold_token=True,
                auth=(client_id, secret),
            ).json()
            self.assertEqual(inactive, {"active": False})

        await in_thread(flow)

    async def test_public_client_eddsa(self) -> None:
        """
        A public client with PKCE and EdDSA signing completes the flow.
        """
        client_id, secret = await self._setup(public=True, signing_alg="EdDSA")
        self.assertIsNone(secret)

        def flow() -> None:
            _, token, claims = self._flow(client_id, None, scope="openid")
            header = json.loads(
                __import__("base64").urlsafe_b64decode(
                    token["id_token"].split(".")[0] + "=="
                )
            )
            self.assertEqual(header["alg"], "EdDSA")
            self.assertEqual(claims["sub"], "alice")
            self.assertNotIn("email", claims)

        await in_thread(flow)

    async def test_client_secret_post(self) -> None:
        """
        client_secret_post authenticates too.
        """
        client_id, secret = await self._setup()

        def flow() -> None:
            _, token, _ = self._flow(
                client_id, secret, auth_method="client_secret_post"
            )
            self.assertIn("access_token", token)

        await in_thread(flow)
