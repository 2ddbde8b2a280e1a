"""
Error handling of the authorization, token, UserInfo, revocation and
introspection endpoints, through a real TLS listener.
"""

from __future__ import annotations

from typing import Any

import requests
from twisted.trial.unittest import TestCase

from tests.oidc_server import (
    PASSWORD,
    REDIRECT_URI,
    Browser,
    OIDCServer,
    auth_url,
    http_session,
    in_thread,
    pkce_pair,
    query_of,
    token_request,
)


def code_for(
    server: OIDCServer, client_id: str, username: str = "alice", **params: str | None
) -> str:
    """
    Sign in through a new browser and return the authorization code.
    """
    location = Browser(server).login(auth_url(server, client_id, **params), username)
    return query_of(location)["code"]


def exchange_code(
    server: OIDCServer,
    client_id: str,
    secret: str | None,
    code: str,
    **extra: str,
) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, **extra}
    data.setdefault("redirect_uri", REDIRECT_URI)
    if secret is None:
        data["client_id"] = client_id
        return token_request(server, data)
    return token_request(server, data, (client_id, secret))


def refresh(
    server: OIDCServer, client_id: str, secret: str | None, token: str, **extra: str
) -> requests.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, **extra}
    return token_request(server, data, (client_id, secret) if secret else None)


def userinfo(server: OIDCServer, access_token: str) -> requests.Response:
    with http_session() as session:
        return session.get(
            server.issuer + "/me",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=10,
        )


class AuthorizationErrorTests(TestCase):
    """
    Authorization request errors: error pages for untrusted clients and
    redirect URIs, redirects for the rest.
    """

    def setUp(self) -> None:
        self.server = OIDCServer.start(self)

    async def _get(self, url: str) -> requests.Response | str:
        result: requests.Response | str = await in_thread(Browser(self.server).get, url)
        return result

    async def _page(self, url: str) -> requests.Response:
        result = await self._get(url)
        self.assertIsInstance(result, requests.Response, f"redirected to {result}")
        assert isinstance(result, requests.Response)
        return result

    async def _redirect_error(self, url: str) -> dict[str, str]:
        result = await self._get(url)
        self.assertIsInstance(result, str)
        self.assertTrue(str(result).startswith(REDIRECT_URI + "?"), result)
        return query_of(str(result))

    async def test_unknown_client(self) -> None:
        """
        An unknown or missing client gets an error page.
        """
        await self.server.add_client()
        for client_id in ("cid-" + "0" * 32, "nonsense", None):
            page = await self._page(auth_url(self.server, client_id))  # type: ignore[arg-type]
            self.assertEqual(page.status_code, 400)
            self.assertNotIn("Location", page.headers)

    async def test_bad_redirect_uri(self) -> None:
        """
        An unregistered, altered or missing redirect_uri gets an error page.
        """
        client, _ = await self.server.add_client()
        for uri in (
            "https://evil.example/callback",
            REDIRECT_URI + "/x",
            REDIRECT_URI + "?x=1",
            None,
        ):
            page = await self._page(
                auth_url(self.server, client.client_id, redirect_uri=uri)
            )
            self.assertEqual(page.status_code, 400, uri)
            self.assertIn("redirect_uri", page.text)

    async def test_repeated_client_id(self) -> None:
        """
        A repeated client_id gets an error page.
        """
        client, _ = await self.server.add_client()
        url = auth_url(self.server, client.client_id) + "&client_id=" + client.client_id
        page = await self._page(url)
        self.assertEqual(page.status_code, 400)

    async def test_redirected_errors(self) -> None:
        """
        Other invalid requests go back to the client with the RFC 6749
        error code and the state.
        """
        client, _ = await self.server.add_client()
        public, _ = await self.server.add_client(public=True)
        _, challenge = pkce_pair()
        cases: list[tuple[str, dict[str, Any], str]] = [
            (client.client_id, {"response_type": "token"}, "unsupported_response_type"),
            (client.client_id, {"response_type": None}, "invalid_request"),
            (client.client_id, {"scope": "profile email"}, "invalid_scope"),
            (public.client_id, {}, "invalid_request"),
            (
                client.client_id,
                {"code_challenge": challenge, "code_challenge_method": "plain"},
                "invalid_request",
            ),
            (client.client_id, {"code_challenge": "short"}, "invalid_request"),
            (client.client_id, {"request": "eyJ.x.y"}, "request_not_supported"),
            (
                client.client_id,
                {"request_uri": "https://x.example/r"},
                "request_uri_not_supported",
            ),
            (client.client_id, {"prompt": "none login"}, "invalid_request"),
            (client.client_id, {"max_age": "-1"}, "invalid_request"),
            (client.client_id, {"response_mode": "fragment"}, "invalid_request"),
        ]
        for client_id, params, error in cases:
            result = await self._redirect_error(
                auth_url(self.server, client_id, **params)
            )
            self.assertEqual(result["error"], error, params)
            self.assertEqual(result["state"], "state-1")
            self.assertIn("error_description", result)

    async def test_repeated_parameter(self) -> None:
        """
        A repeated parameter other than client_id and redirect_uri is
        invalid_request at the client.
        """
        client, _ = await self.server.add_client()
        url = auth_url(self.server, client.client_id) + "&scope=openid"
        result = await self._redirect_error(url)
        self.assertEqual(result["error"], "invalid_request")

    async def test_parameter_not_utf8(self) -> None:
        """
        A parameter that is not UTF-8 is invalid_request, sent to the client
        when its redirect URI is valid and shown on an error page otherwise;
        it is never left out as if it had not been sent.
        """
        client, _ = await self.server.add_client()
        for name in ("state", "code_challenge", "nonce"):
            url = auth_url(self.server, client.client_id, **{name: None})
            result = await self._redirect_error(url + f"&{name}=%FF")
            self.assertEqual(result["error"], "invalid_request", name)
        page = await self._page(
            auth_url(self.server, client.client_id, redirect_uri=None)
            + "&redirect_uri=https%3A%2F%2Fapp.example%2F%FF"
        )
        self.assertEqual(page.status_code, 400)

    async def test_loopback_redirect_port(self) -> None:
        """
        A loopback redirect URI may come back with another port.
        """
        await self.server.add_user("alice")
        client, _ = await self.server.add_client(redirect_uris=["http://127.0.0.1/cb"])

        def flow() -> str:
            return Browser(self.server).login(
                auth_url(
                    self.server,
                    client.client_id,
                    redirect_uri="http://127.0.0.1:49152/cb",
                ),
                "alice",
            )

        location = await in_thread(flow)
        self.assertTrue(location.startswith("http://127.0.0.1:49152/cb?code="))

    async def test_allowed_groups(self) -> None:
        """
        A user outside the client's groups gets access_denied; members and
        admins get codes.
        """
        await self.server.add_user("alice")
        bob = await self.server.add_user("bob")
        await self.server.add_user("root-user", role="admin")
        group = await self.server.directory.add_group("app-users")
        await self.server.directory.add_member(group.id, bob.id)
        client, _ = await self.server.add_client(allowed_group_ids=[group.id])

        def flow() -> None:
            url = auth_url(self.server, client.client_id)
            denied = Browser(self.server).login(url, "alice")
            self.assertEqual(query_of(denied)["error"], "access_denied")
            self.assertIn("code", query_of(Browser(self.server).login(url, "bob")))
            self.assertIn(
                "code", query_of(Browser(self.server).login(url, "root-user"))
            )

        await in_thread(flow)


class TokenErrorTests(TestCase):
    """
    Token endpoint errors: JSON bodies with RFC 6749 codes and statuses.
    """

    def setUp(self) -> None:
        self.server = OIDCServer.start(self)

    async def _setup(self, **options: Any) -> tuple[str, str | None]:
        self.user = await self.server.add_user("alice")
        client, secret = await self.server.add_client(**options)
        return client.client_id, secret

    async def test_invalid_client(self) -> None:
        """
        Unknown clients, wrong or missing secrets are invalid_client with
        401 and WWW-Authenticate.
        """
        client_id, secret = await self._setup()
        assert secret is not None
        data = {"grant_type": "authorization_code", "code": "x"}
        attempts = [
            (data, ("cid-" + "0" * 32, secret)),
            (data, (client_id, secret + "x")),
            (data, (client_id, "")),
            ({**data, "client_id": client_id}, None),
            (data, None),
        ]

        def flow() -> None:
            for form, auth in attempts:
                response = token_request(self.server, form, auth)
                self.assertEqual(response.status_code, 401, (form, auth))
                self.assertEqual(response.json()["error"], "invalid_client")
                self.assertIn("Basic", response.headers["WWW-Authenticate"])
                self.assertEqual(response.headers["Cache-Control"], "no-store")

        await in_thread(flow)

    async def test_basic_credentials_are_url_decoded(self) -> None:
        """
        The Basic header's id and secret are form-decoded (RFC 6749 2.3.1),
        so a client that encodes them still authenticates.
        """
        client_id, secret = await self._setup()
        assert secret is not None

        def flow() -> None:
            code = code_for(self.server, client_id)
            # Percent-encode every character: the server must decode them.
            encoded = "".join(f"%{ord(c):02X}" for c in secret)
            response = exchange_code(self.server, client_id, encoded, code)
            self.assertEqual(response.status_code, 200, response.text)

        await in_thread(flow)

    async def test_malformed_requests(self) -> None:
        """
        A missing grant type or code, an unknown grant type, a repeated
        parameter and a JSON body are rejected with the right codes.
        """
        client_id, secret = await self._setup()
        assert secret is not None
        auth = (client_id, secret)

        def flow() -> None:
            cases = [
                ({}, "invalid_request"),
                ({"grant_type": "password"}, "unsupported_grant_type"),
                ({"grant_type": "authorization_code"}, "invalid_request"),
                ({"grant_type": "refresh_token"}, "invalid_request"),
                (
                    {"grant_type": ["authorization_code", "refresh_token"]},
                    "invalid_request",
                ),
            ]
            for data, error in cases:
                response = token_request(self.server, data, auth)  # type: ignore[arg-type]
                self.assertEqual(response.status_code, 400, data)
                self.assertEqual(response.json()["error"], error, data)
            with http_session() as session:
                response = session.post(
                    self.server.issuer + "/token",
                    json={"grant_type": "authorization_code"},
                    auth=auth,
                )
            self.assertEqual(response.json()["error"], "invalid_request")

        await in_thread(flow)

    async def test_wrong_method(self) -> None:
        """
        Other methods than POST on the token, revocation and introspection
        endpoints get a JSON error with status 405 and an Allow header.
        """
        await self._setup()

        def flow() -> None:
            with http_session() as session:
                for path, allowed in (
                    ("/token", "OPTIONS, POST"),
                    ("/token/revocation", "OPTIONS, POST"),
                    ("/token/introspection", "POST"),
                ):
                    for method in ("GET", "PUT", "DELETE"):
                        response = session.request(
                            method, self.server.issuer + path, timeout=10
                        )
                        self.assertEqual(response.status_code, 405, (method, path))
                        self.assertEqual(response.headers["Allow"], allowed)
                        self.assertEqual(response.headers["Cache-Control"], "no-store")
                        self.assertEqual(
                            response.json()["error"], "invalid_request", path
                        )

        await in_thread(flow)

    async def test_code_replay_revokes(self) -> None:
        """
        A code used twice fails the second time, and the tokens of the first
        exchange stop working.
        """
        client_id, secret = await self._setup()

        def flow() -> None:
            code = code_for(self.server, client_id)
            first = exchange_code(self.server, client_id, secret, code)
            self.assertEqual(first.status_code, 200)
            tokens = first.json()
            self.assertEqual(
                userinfo(self.server, tokens["access_token"]).status_code, 200
            )
            second = exchange_code(self.server, client_id, secret, code)
            self.assertEqual(second.status_code, 400)
            self.assertEqual(second.json()["error"], "invalid_grant")
            self.assertEqual(
                userinfo(self.server, tokens["access_token"]).status_code, 401
            )
            again = refresh(self.server, client_id, secret, tokens["refresh_token"])
            self.assertEqual(again.json()["error"], "invalid_grant")

        await in_thread(flow)

    async def test_code_checks(self) -> None:
        """
        An unknown code, one for another client, one with another
        redirect_uri, and an expired one are invalid_grant.
        """
        client_id, secret = await self._setup()
        other, other_secret = await self.server.add_client(name="Other")

        def flow() -> None:
            cases = []
            cases.append(exchange_code(self.server, client_id, secret, "unknown"))
            code = code_for(self.server, client_id)
            cases.append(
                exchange_code(self.server, other.client_id, other_secret, code)
            )
            code = code_for(self.server, client_id)
            cases.append(
                exchange_code(
                    self.server,
                    client_id,
                    secret,
                    code,
                    redirect_uri="https://app.example/other",
                )
            )
            code = code_for(self.server, client_id)
            cases.append(
                exchange_code(self.server, client_id, secret, code, redirect_uri="")
            )
            for response in cases:
                self.assertEqual(response.status_code, 400, response.text)
                self.assertEqual(response.json()["error"], "invalid_grant")

        await in_thread(flow)

    async def test_expired_code(self) -> None:
        """
        A code past its lifetime is invalid_grant.
        """
        client_id, secret = await self._setup()
        self.server.set_lifetimes(code=0.0)

        def flow() -> None:
            code = code_for(self.server, client_id)
            response = exchange_code(self.server, client_id, secret, code)
            self.assertEqual(response.json()["error"], "invalid_grant")
            self.assertIn("expired", response.json()["error_description"])

        await in_thread(flow)

    async def test_pkce(self) -> None:
        """
        A wrong or missing verifier, and a verifier without a stored
        challenge, are invalid_grant; the right verifier works.
        """
        client_id, secret = await self._setup()
        public, _ = await self.server.add_client(name="Public", public=True)

        def flow() -> None:
            verifier, challenge = pkce_pair()
            other_verifier, _ = pkce_pair()
            params = {"code_challenge": challenge, "code_challenge_method": "S256"}

            code = code_for(self.server, client_id, **params)
            wrong = exchange_code(
                self.server, client_id, secret, code, code_verifier=other_verifier
            )
            self.assertEqual(wrong.json()["error"], "invalid_grant")

            code = code_for(self.server, client_id, **params)
            missing = exchange_code(self.server, client_id, secret, code)
            self.assertEqual(missing.json()["error"], "invalid_grant")

            code = code_for(self.server, client_id)
            unexpected = exchange_code(
                self.server, client_id, secret, code, code_verifier=verifier
            )
            self.assertEqual(unexpected.json()["error"], "invalid_grant")

            code = code_for(self.server, public.client_id, **params)
            wrong_public = exchange_code(
                self.server, public.client_id, None, code, code_verifier=other_verifier
            )
            self.assertEqual(wrong_public.json()["error"], "invalid_grant")

            code = code_for(self.server, public.client_id, **params)
            right = exchange_code(
                self.server, public.client_id, None, code, code_verifier=verifier
            )
            self.assertEqual(right.status_code, 200, right.text)

        await in_thread(flow)

    async def test_public_client_secret(self) -> None:
        """
        A public client that sends a secret is invalid_client.
        """
        public, _ = await self.server.add_client(public=True)
        response = await in_thread(
            token_request,
            self.server,
            {"grant_type": "authorization_code", "code": "x"},
            (public.client_id, "guess"),
        )
        self.assertEqual(response.status_code, 401)


class RefreshTests(TestCase):
    """
    Refresh token rotation and the checks made at each refresh.
    """

    def setUp(self) -> None:
        self.server = OIDCServer.start(self)

    async def _tokens(self, **options: Any) -> tuple[str, str | None, dict[str, Any]]:
        self.user = await self.server.add_user("alice")
        client, secret = await self.server.add_client(**options)

        def flow() -> dict[str, Any]:
            code = code_for(self.server, client.client_id)
            response = exchange_code(self.server, client.client_id, secret, code)
            result: dict[str, Any] = response.json()
            return result

        return client.client_id, secret, await in_thread(flow)

    async def _refresh_fails(
        self, client_id: str, secret: str | None, token: str
    ) -> None:
        response = await in_thread(refresh, self.server, client_id, secret, token)
        self.assertEqual(response.status_code, 400, response.text)
        self.assertEqual(response.json()["error"], "invalid_grant")

    async def test_rotation_and_reuse(self) -> None:
        """
        A rotated token works again within the grace window; after it, its
        reuse revokes the whole chain.
        """
        client_id, secret, tokens = await self._tokens()

        def flow() -> None:
            first = refresh(self.server, client_id, secret, tokens["refresh_token"])
            self.assertEqual(first.status_code, 200)
            retried = refresh(self.server, client_id, secret, tokens["refresh_token"])
            self.assertEqual(retried.status_code, 200, retried.text)

            self.server.set_lifetimes(refresh_grace=0.0)
            reused = refresh(self.server, client_id, secret, tokens["refresh_token"])
            self.assertEqual(reused.json()["error"], "invalid_grant")
            latest = refresh(
                self.server, client_id, secret, retried.json()["refresh_token"]
            )
            self.assertEqual(latest.json()["error"], "invalid_grant")
            access = retried.json()["access_token"]
            self.assertEqual(userinfo(self.server, access).status_code, 401)

        await in_thread(flow)

    async def test_other_client(self) -> None:
        """
        A refresh token is useless to another client.
        """
        client_id, secret, tokens = await self._tokens()
        other, other_secret = await self.server.add_client(name="Other")
        await self._refresh_fails(
            other.client_id, other_secret, tokens["refresh_token"]
        )
        response = await in_thread(
            refresh, self.server, client_id, secret, tokens["refresh_token"]
        )
        self.assertEqual(response.status_code, 200)

    async def test_scope(self) -> None:
        """
        A refresh may narrow the scope, not widen it.
        """
        client_id, secret, tokens = await self._tokens()

        def flow() -> None:
            wider = refresh(
                self.server,
                client_id,
                secret,
                tokens["refresh_token"],
                scope="openid email",
            )
            self.assertEqual(wider.json()["error"], "invalid_scope")
            narrower = refresh(
                self.server, client_id, secret, tokens["refresh_token"], scope="openid"
            )
            self.assertEqual(narrower.json()["scope"], "openid")
            claims = userinfo(self.server, narrower.json()["access_token"]).json()
            self.assertEqual(claims, {"sub": "alice"})

        await in_thread(flow)

    async def test_disabled_user(self) -> None:
        """
        Refresh and UserInfo fail once the user is disabled.
        """
        client_id, secret, tokens = await self._tokens()
        await self.server.directory.update_user(self.user.id, active=False)
        response = await in_thread(userinfo, self.server, tokens["access_token"])
        self.assertEqual(response.status_code, 401)
        await self._refresh_fails(client_id, secret, tokens["refresh_token"])

    async def test_deleted_user(self) -> None:
        """
        Refresh fails once the user is deleted.
        """
        client_id, secret, tokens = await self._tokens()
        await self.server.directory.delete_user(self.user.id)
        await self._refresh_fails(client_id, secret, tokens["refresh_token"])

    async def test_password_change(self) -> None:
        """
        Refresh fails once the user changed password.
        """
        client_id, secret, tokens = await self._tokens()
        await self.server.directory.set_password(self.user.id, PASSWORD + " new")
        await self._refresh_fails(client_id, secret, tokens["refresh_token"])

    async def test_group_removal_after_login(self) -> None:
        """
        A member who gets a refresh token and is then removed from the
        allowed group can no longer refresh.
        """
        user = await self.server.add_user("alice")
        group = await self.server.directory.add_group("app-users")
        await self.server.directory.add_member(group.id, user.id)
        client, secret = await self.server.add_client(allowed_group_ids=[group.id])

        def flow() -> dict[str, Any]:
            code = code_for(self.server, client.client_id)
            result: dict[str, Any] = exchange_code(
                self.server, client.client_id, secret, code
            ).json()
            return result

        tokens = await in_thread(flow)
        response = await in_thread(
            refresh, self.server, client.client_id, secret, tokens["refresh_token"]
        )
        self.assertEqual(response.status_code, 200)
        await self.server.directory.remove_member(group.id, user.id)
        await self._refresh_fails(
            client.client_id, secret, response.json()["refresh_token"]
        )


class BearerAndRevocationTests(TestCase):
    """
    UserInfo authentication errors, revocation and introspection across
    clients.
    """

    def setUp(self) -> None:
        self.server = OIDCServer.start(self)

    async def _tokens(self) -> tuple[str, str | None, dict[str, Any]]:
        await self.server.add_user("alice")
        client, secret = await self.server.add_client()

        def flow() -> dict[str, Any]:
            code = code_for(self.server, client.client_id)
            result: dict[str, Any] = exchange_code(
                self.server, client.client_id, secret, code
            ).json()
            return result

        return client.client_id, secret, await in_thread(flow)

    async def test_userinfo_errors(self) -> None:
        """
        No token is 401 without an error code; a bad token is 401
        invalid_token; a token in both header and body is 400.
        """
        _, _, tokens = await self._tokens()

        def flow() -> None:
            with http_session() as session:
                none = session.get(self.server.issuer + "/me")
                self.assertEqual(none.status_code, 401)
                self.assertEqual(
                    none.headers["WWW-Authenticate"], 'Bearer realm="idserver"'
                )
                bad = userinfo(self.server, "not-a-token")
                self.assertEqual(bad.status_code, 401)
                self.assertIn('error="invalid_token"', bad.headers["WWW-Authenticate"])
                both = session.post(
                    self.server.issuer + "/me",
                    data={"access_token": tokens["access_token"]},
                    headers={"Authorization": "Bearer " + tokens["access_token"]},
                )
                self.assertEqual(both.status_code, 400)
                self.assertEqual(both.json()["error"], "invalid_request")

        await in_thread(flow)

    async def test_other_clients_tokens(self) -> None:
        """
        Another client can neither introspect nor revoke a client's tokens.
        """
        client_id, secret, tokens = await self._tokens()
        other, other_secret = await self.server.add_client(name="Other")
        assert other_secret is not None

        def flow() -> None:
            for token in (tokens["access_token"], tokens["refresh_token"]):
                seen = token_request(
                    self.server,
                    {"token": token},
                    (other.client_id, other_secret),
                    "/token/introspection",
                )
                self.assertEqual(seen.json(), {"active": False})
                revoked = token_request(
                    self.server,
                    {"token": token},
                    (other.client_id, other_secret),
                    "/token/revocation",
                )
                self.assertEqual(revoked.status_code, 200)
            self.assertEqual(
                userinfo(self.server, tokens["access_token"]).status_code, 200
            )
            own = token_request(
                self.server,
                {"token": tokens["refresh_token"]},
                (client_id, secret),  # type: ignore[arg-type]
                "/token/introspection",
            ).json()
            self.assertTrue(own["active"])
            self.assertEqual(own["token_type"], "refresh_token")

        await in_thread(flow)

    async def test_revoke_access_token(self) -> None:
        """
        Revoking an access token ends it at once; unknown tokens are fine.
        """
        client_id, secret, tokens = await self._tokens()
        auth = (client_id, secret)

        def flow() -> None:
            response = token_request(
                self.server,
                {"token": tokens["access_token"], "token_type_hint": "access_token"},
                auth,  # type: ignore[arg-type]
                "/token/revocation",
            )
            self.assertEqual(response.status_code, 200)
            self.assertEqual(
                userinfo(self.server, tokens["access_token"]).status_code, 401
            )
            unknown = token_request(
                self.server,
                {"token": "unknown"},
                auth,
                "/token/revocation",  # type: ignore[arg-type]
            )
            self.assertEqual(unknown.status_code, 200)

        await in_thread(flow)

    async def test_public_client_introspection(self) -> None:
        """
        Introspection needs an authenticated (confidential) client.
        """
        public, _ = await self.server.add_client(public=True)
        response = await in_thread(
            token_request,
            self.server,
            {"token": "x", "client_id": public.client_id},
            None,
            "/token/introspection",
        )
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response.json()["error"], "invalid_client")
