"""
Browser logins through a real TLS listener: single sign-on, TOTP, the
mandatory 2FA enrolment, prompt and max_age, form_post, end session.
"""

from __future__ import annotations

import re
import time

import pyotp
import requests
from jwcrypto.jwk import JWK
from jwcrypto.jwt import JWT
from twisted.internet import defer
from twisted.trial.unittest import TestCase

from idserver.errors import HasherBusyError
from idserver.oidc.protocol import hash_half
from tests.oidc_server import (
    PASSWORD,
    REDIRECT_URI,
    Browser,
    OIDCServer,
    auth_url,
    form_fields,
    http_session,
    in_thread,
    query_of,
    token_request,
)


def exchange(
    server: OIDCServer, location: str, client_id: str, secret: str | None, **extra: str
) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": query_of(location)["code"],
        "redirect_uri": REDIRECT_URI,
        **extra,
    }
    auth = (client_id, secret) if secret else None
    if secret is None:
        data["client_id"] = client_id
    return token_request(server, data, auth)


def id_token_claims(server: OIDCServer, id_token: str) -> dict:
    import json

    from jwcrypto.jwt import JWT

    parsed = JWT(jwt=id_token, key=server.keys.verification_keys())
    return json.loads(parsed.claims)


class LoginTests(TestCase):
    """
    The login form, single sign-on and 2FA.
    """

    def setUp(self) -> None:
        self.server = OIDCServer.start(self)

    async def _client(self, **options: object) -> tuple[str, str | None]:
        client, secret = await self.server.add_client(**options)
        return client.client_id, secret

    async def test_login_page(self) -> None:
        """
        The login page is titled with the server name and has the username
        and password inputs with their autocomplete values.
        """
        await self.server.directory.set_setting("name", "Example Corp")
        client_id, _ = await self._client()

        def check() -> None:
            page = Browser(self.server).get(auth_url(self.server, client_id))
            assert isinstance(page, requests.Response)
            self.assertEqual(page.status_code, 200)
            self.assertIn("<title>Example Corp</title>", page.text)
            self.assertRegex(
                page.text,
                r'name="username"[^>]*autocomplete="username"|'
                r'autocomplete="username"[^>]*name="username"',
            )
            self.assertIn('autocomplete="current-password"', page.text)
            self.assertEqual(page.headers["Cache-Control"], "no-store")
            cookie = page.headers.get("Set-Cookie", "")
            self.assertIn("Secure", cookie)
            self.assertIn("HttpOnly", cookie)
            self.assertIn("SameSite=lax", cookie)
            self.assertIn(
                "frame-ancestors 'none'", page.headers["Content-Security-Policy"]
            )

        await in_thread(check)

    async def test_single_sign_on(self) -> None:
        """
        A second authorization from the same browser skips the form, also
        for another client.
        """
        await self.server.add_user("alice")
        first, secret = await self._client()
        second, _ = await self._client(name="Other")

        def flow() -> None:
            browser = Browser(self.server)
            location = browser.login(auth_url(self.server, first), "alice")
            self.assertIn("code", query_of(location))
            again = browser.get(auth_url(self.server, first, state="s2"))
            self.assertIsInstance(again, str)
            self.assertEqual(query_of(again)["state"], "s2")
            other = browser.get(auth_url(self.server, second))
            self.assertIsInstance(other, str)
            self.assertIn("code", query_of(other))
            response = exchange(self.server, again, first, secret)
            self.assertEqual(response.status_code, 200, response.text)

        await in_thread(flow)

    async def test_wrong_password(self) -> None:
        """
        A wrong password shows the form again with a generic error.
        """
        await self.server.add_user("alice")
        client_id, _ = await self._client()

        def flow() -> None:
            browser = Browser(self.server)
            page = browser.get(auth_url(self.server, client_id))
            assert isinstance(page, requests.Response)
            result = browser.submit(page, username="alice", password="wrong password")
            assert isinstance(result, requests.Response)
            self.assertEqual(result.status_code, 401)
            self.assertIn("Wrong username or password", result.text)
            unknown = browser.submit(result, username="nobody", password="whatever1")
            assert isinstance(unknown, requests.Response)
            self.assertIn("Wrong username or password", unknown.text)

        await in_thread(flow)
        events = await self.server.directory.events(kind="login.failed")
        self.assertEqual(len(events), 2)
        self.assertEqual(events[-1].entry_point, "web")
        self.assertEqual(events[-1].address, "127.0.0.1")

    async def test_rate_limited(self) -> None:
        """
        After five failures for a user even the right password fails.
        """
        await self.server.add_user("alice")
        client_id, _ = await self._client()

        def flow() -> None:
            browser = Browser(self.server)
            page = browser.get(auth_url(self.server, client_id))
            for _ in range(5):
                assert isinstance(page, requests.Response)
                page = browser.submit(page, username="alice", password="wrong pass")
            assert isinstance(page, requests.Response)
            result = browser.submit(page, username="alice", password=PASSWORD)
            assert isinstance(result, requests.Response)
            self.assertEqual(result.status_code, 401)

        await in_thread(flow)

    async def test_hasher_busy(self) -> None:
        """
        When the password hashing queue is full the login returns 503.
        """
        client_id, _ = await self._client()

        def busy(credentials: object) -> defer.Deferred[object]:
            return defer.fail(HasherBusyError())

        # The real queue fills only under load. The login service passes the
        # hasher's error through unchanged, so raising it here is equivalent.
        self.server.oidc.login_pages.logins.authenticate = busy  # type: ignore[method-assign]

        def flow() -> None:
            browser = Browser(self.server)
            page = browser.get(auth_url(self.server, client_id))
            assert isinstance(page, requests.Response)
            result = browser.submit(page, username="alice", password=PASSWORD)
            assert isinstance(result, requests.Response)
            self.assertEqual(result.status_code, 503)
            self.assertIn("Retry-After", result.headers)

        await in_thread(flow)

    async def test_login_by_email(self) -> None:
        """
        The email address works as the login name.
        """
        await self.server.add_user("alice")
        client_id, _ = await self._client()

        def flow() -> None:
            location = Browser(self.server).login(
                auth_url(self.server, client_id), "Alice@Example.com"
            )
            self.assertIn("code", query_of(location))

        await in_thread(flow)

    async def test_csrf(self) -> None:
        """
        A login POST without the session's CSRF token is rejected.
        """
        await self.server.add_user("alice")
        client_id, _ = await self._client()

        def flow() -> None:
            browser = Browser(self.server)
            page = browser.get(auth_url(self.server, client_id))
            assert isinstance(page, requests.Response)
            result = browser.submit(
                page, username="alice", password=PASSWORD, csrf_token="forged"
            )
            assert isinstance(result, requests.Response)
            self.assertEqual(result.status_code, 403)
            fresh = Browser(self.server)
            fields = form_fields(page.text)
            fields.update(username="alice", password=PASSWORD)
            response = fresh.session.post(
                self.server.base_url + "/login", data=fields, allow_redirects=False
            )
            self.assertEqual(response.status_code, 403)

        await in_thread(flow)

    async def test_totp_login(self) -> None:
        """
        A user with 2FA gives a code after the password; the ID token's amr
        lists pwd and otp; a reused code fails.
        """
        user = await self.server.add_user("alice")
        secret_b32 = await self.server.directory.enable_totp(user.id)
        client_id, secret = await self._client()

        def flow() -> None:
            code = pyotp.TOTP(secret_b32).now()
            browser = Browser(self.server)
            page = browser.get(auth_url(self.server, client_id))
            assert isinstance(page, requests.Response)
            totp_page = browser.submit(page, username="alice", password=PASSWORD)
            assert isinstance(totp_page, requests.Response)
            self.assertIn('autocomplete="one-time-code"', totp_page.text)
            wrong = browser.submit(
                totp_page, totp="000000" if code != "000000" else "111111"
            )
            assert isinstance(wrong, requests.Response)
            self.assertEqual(wrong.status_code, 401)
            location = browser.submit(wrong, totp=code)
            self.assertIsInstance(location, str)
            response = exchange(self.server, location, client_id, secret)
            claims = id_token_claims(self.server, response.json()["id_token"])
            self.assertEqual(claims["amr"], ["pwd", "otp"])

            # The same code cannot sign in another browser.
            other = Browser(self.server)
            page = other.get(auth_url(self.server, client_id))
            assert isinstance(page, requests.Response)
            step = other.submit(page, username="alice", password=PASSWORD)
            assert isinstance(step, requests.Response)
            reused = other.submit(step, totp=code)
            assert isinstance(reused, requests.Response)
            self.assertEqual(reused.status_code, 401)

        await in_thread(flow)

    async def test_mandatory_2fa_enrolment(self) -> None:
        """
        With mandatory 2FA a user without it enrols on a page with a QR
        code and the secret, confirms a code, and only then reaches the app.
        """
        await self.server.add_user("alice")
        await self.server.directory.set_setting("mandatory_2fa", True)
        client_id, secret = await self._client()

        def flow() -> str:
            browser = Browser(self.server)
            page = browser.get(auth_url(self.server, client_id))
            assert isinstance(page, requests.Response)
            enrol = browser.submit(page, username="alice", password=PASSWORD)
            assert isinstance(enrol, requests.Response), enrol
            self.assertIn('src="data:image/svg+xml;base64,', enrol.text)
            match = re.search(r"<code>([A-Z2-7]+)</code>", enrol.text)
            assert match is not None, enrol.text
            totp_secret = match.group(1)

            # Without enrolment the app is out of reach.
            blocked = browser.get(auth_url(self.server, client_id, prompt="none"))
            self.assertEqual(query_of(str(blocked))["error"], "login_required")

            wrong = browser.submit(enrol, totp="000000")
            assert isinstance(wrong, requests.Response)
            self.assertEqual(wrong.status_code, 401)
            self.assertIn(totp_secret, wrong.text)
            location = browser.submit(wrong, totp=pyotp.TOTP(totp_secret).now())
            self.assertIsInstance(location, str)
            response = exchange(self.server, str(location), client_id, secret)
            self.assertEqual(response.status_code, 200, response.text)
            return totp_secret

        await in_thread(flow)
        user = await self.server.directory.user_by_username("alice")
        assert user is not None
        self.assertTrue(user.totp_enabled)

    async def test_mandatory_2fa_ends_sessions(self) -> None:
        """
        Turning mandatory 2FA on ends the browser sessions and refresh
        tokens of users without 2FA, and not those of users with it.
        """
        await self.server.add_user("alice")
        bob = await self.server.add_user("bob")
        bob_secret = await self.server.directory.enable_totp(bob.id)
        client_id, secret = await self._client()
        alice_browser = Browser(self.server)
        bob_browser = Browser(self.server)

        def login() -> tuple[str, str]:
            location = alice_browser.login(auth_url(self.server, client_id), "alice")
            alice = exchange(self.server, location, client_id, secret).json()
            location = bob_browser.login(
                auth_url(self.server, client_id),
                "bob",
                totp=pyotp.TOTP(bob_secret).now(),
            )
            bob = exchange(self.server, location, client_id, secret).json()
            return alice["refresh_token"], bob["refresh_token"]

        alice_refresh, bob_refresh = await in_thread(login)
        await self.server.directory.set_setting("mandatory_2fa", True)

        def after() -> None:
            refused = token_request(
                self.server,
                {"grant_type": "refresh_token", "refresh_token": alice_refresh},
                (client_id, secret),
            )
            self.assertEqual(refused.status_code, 400)
            self.assertEqual(refused.json()["error"], "invalid_grant")
            page = alice_browser.get(auth_url(self.server, client_id))
            assert isinstance(page, requests.Response)
            self.assertIn('name="password"', page.text)

            allowed = token_request(
                self.server,
                {"grant_type": "refresh_token", "refresh_token": bob_refresh},
                (client_id, secret),
            )
            self.assertEqual(allowed.status_code, 200, allowed.text)
            self.assertIsInstance(
                bob_browser.get(auth_url(self.server, client_id)), str
            )

        await in_thread(after)

    async def test_prompt_none(self) -> None:
        """
        prompt=none without a session returns login_required to the client;
        with a session it returns a code.
        """
        await self.server.add_user("alice")
        client_id, _ = await self._client()

        def flow() -> None:
            browser = Browser(self.server)
            result = browser.get(auth_url(self.server, client_id, prompt="none"))
            self.assertIsInstance(result, str)
            params = query_of(str(result))
            self.assertEqual(params["error"], "login_required")
            self.assertEqual(params["state"], "state-1")
            self.assertEqual(params["iss"], self.server.issuer)
            browser.login(auth_url(self.server, client_id), "alice")
            result = browser.get(auth_url(self.server, client_id, prompt="none"))
            self.assertIn("code", query_of(str(result)))

        await in_thread(flow)

    async def test_id_token_hint_of_other_user(self) -> None:
        """
        An id_token_hint naming another user than the signed-in one gets
        login_required with prompt=none, and the form with that username
        filled in otherwise; a hint naming the signed-in user changes
        nothing.
        """
        await self.server.add_user("alice")
        await self.server.add_user("bob")
        client_id, _ = await self._client()
        alice_hint = self.server.keys.sign(
            {"iss": self.server.issuer, "sub": "alice", "aud": client_id}, "RS256"
        )

        def flow() -> None:
            browser = Browser(self.server)
            browser.login(auth_url(self.server, client_id), "bob")
            silent = browser.get(
                auth_url(
                    self.server, client_id, prompt="none", id_token_hint=alice_hint
                )
            )
            self.assertEqual(query_of(str(silent))["error"], "login_required")

            page = browser.get(
                auth_url(self.server, client_id, id_token_hint=alice_hint)
            )
            assert isinstance(page, requests.Response)
            self.assertIn('value="alice"', page.text)
            location = browser.submit(page, username="alice", password=PASSWORD)
            self.assertIn("code", query_of(str(location)))

            same = browser.get(
                auth_url(
                    self.server, client_id, prompt="none", id_token_hint=alice_hint
                )
            )
            self.assertIn("code", query_of(str(same)))

        await in_thread(flow)

    async def test_prompt_login_and_max_age(self) -> None:
        """
        prompt=login and an exceeded max_age show the form despite a
        session; after that login the code is issued.
        """
        await self.server.add_user("alice")
        client_id, secret = await self._client()

        def flow() -> None:
            browser = Browser(self.server)
            browser.login(auth_url(self.server, client_id), "alice")
            location = browser.login(
                auth_url(self.server, client_id, prompt="login"), "alice"
            )
            self.assertIn("code", query_of(location))
            time.sleep(1.1)
            location = browser.login(
                auth_url(self.server, client_id, max_age="0"), "alice"
            )
            response = exchange(self.server, location, client_id, secret)
            claims = id_token_claims(self.server, response.json()["id_token"])
            self.assertLessEqual(abs(claims["auth_time"] - time.time()), 5)
            recent = browser.get(auth_url(self.server, client_id, max_age="3600"))
            self.assertIsInstance(recent, str)

        await in_thread(flow)

    async def test_form_post(self) -> None:
        """
        response_mode=form_post returns a page that posts code, state and
        iss to the redirect URI.
        """
        await self.server.add_user("alice")
        client_id, secret = await self._client()

        def flow() -> None:
            browser = Browser(self.server)
            browser.login(auth_url(self.server, client_id), "alice")
            page = browser.get(
                auth_url(self.server, client_id, response_mode="form_post")
            )
            assert isinstance(page, requests.Response)
            self.assertEqual(page.status_code, 200)
            self.assertIn(f'action="{REDIRECT_URI}"', page.text)
            self.assertIn('src="/static/form_post.js"', page.text)
            fields = form_fields(page.text)
            self.assertEqual(fields["state"], "state-1")
            self.assertEqual(fields["iss"], self.server.issuer)
            response = token_request(
                self.server,
                {
                    "grant_type": "authorization_code",
                    "code": fields["code"],
                    "redirect_uri": REDIRECT_URI,
                },
                (client_id, secret),
            )
            self.assertEqual(response.status_code, 200, response.text)
            script = browser.session.get(self.server.base_url + "/static/form_post.js")
            self.assertEqual(script.status_code, 200)

        await in_thread(flow)

    async def test_form_post_error(self) -> None:
        """
        Errors go back through form_post as well.
        """
        client_id, _ = await self._client()

        def flow() -> None:
            page = Browser(self.server).get(
                auth_url(
                    self.server, client_id, response_mode="form_post", prompt="none"
                )
            )
            assert isinstance(page, requests.Response)
            fields = form_fields(page.text)
            self.assertEqual(fields["error"], "login_required")
            self.assertEqual(fields["state"], "state-1")

        await in_thread(flow)

    async def test_post_without_cookie(self) -> None:
        """
        A POST authorization request without the session cookie, as a
        browser sends it from another site (the cookie is SameSite=Lax), is
        sent on as a GET request, which carries the cookie: a signed-in
        user gets a code even with prompt=none.
        """
        await self.server.add_user("alice")
        client_id, _ = await self._client()

        def flow() -> None:
            browser = Browser(self.server)
            browser.login(auth_url(self.server, client_id), "alice")
            form = {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": "openid",
                "state": "s-post",
                "prompt": "none",
            }
            with http_session() as cross_site:
                response = cross_site.post(
                    self.server.issuer + "/auth",
                    data=form,
                    allow_redirects=False,
                    timeout=10,
                )
            self.assertEqual(response.status_code, 303)
            location = response.headers["Location"]
            self.assertTrue(location.startswith("/openid/auth?"), location)
            self.assertEqual(query_of(location), form)
            result = browser.get(self.server.base_url + location)
            self.assertIn("code", query_of(str(result)))
            self.assertEqual(query_of(str(result))["state"], "s-post")

        await in_thread(flow)

    async def test_at_hash_and_nonce(self) -> None:
        """
        The ID token carries the nonce and an at_hash of the access token,
        for RS256 and EdDSA.
        """
        await self.server.add_user("alice")
        for alg in ("RS256", "EdDSA"):
            client_id, secret = await self._client(signing_alg=alg)

            def flow(client_id: str, secret: str | None, alg: str) -> None:
                location = Browser(self.server).login(
                    auth_url(self.server, client_id, nonce="n-42"), "alice"
                )
                tokens = exchange(self.server, location, client_id, secret).json()
                claims = id_token_claims(self.server, tokens["id_token"])
                self.assertEqual(claims["nonce"], "n-42")
                self.assertEqual(
                    claims["at_hash"], hash_half(tokens["access_token"], alg)
                )

            await in_thread(flow, client_id, secret, alg)


class EndSessionTests(TestCase):
    """
    RP-initiated logout.
    """

    def setUp(self) -> None:
        self.server = OIDCServer.start(self)

    async def _login(self) -> tuple[Browser, str, str]:
        await self.server.add_user("alice")
        client, secret = await self.server.add_client(
            post_logout_redirect_uris=["https://app.example/bye"]
        )
        browser = Browser(self.server)

        def login() -> str:
            location = browser.login(auth_url(self.server, client.client_id), "alice")
            tokens = exchange(self.server, location, client.client_id, secret).json()
            return str(tokens["id_token"])

        return browser, client.client_id, await in_thread(login)

    def _end_url(self, **params: str) -> str:
        from urllib.parse import urlencode

        return self.server.issuer + "/session/end?" + urlencode(params)

    async def test_with_hint(self) -> None:
        """
        With an id_token_hint the session ends at once and the browser goes
        to the registered URI with state; the next authorization needs the
        form.
        """
        browser, client_id, id_token = await self._login()

        def flow() -> None:
            result = browser.get(
                self._end_url(
                    id_token_hint=id_token,
                    post_logout_redirect_uri="https://app.example/bye",
                    state="bye-1",
                )
            )
            self.assertEqual(result, "https://app.example/bye?state=bye-1")
            page = browser.get(auth_url(self.server, client_id))
            assert isinstance(page, requests.Response)
            self.assertIn('name="password"', page.text)
            # The session is already gone: still redirected.
            again = browser.get(
                self._end_url(
                    id_token_hint=id_token,
                    post_logout_redirect_uri="https://app.example/bye",
                    state="bye-2",
                )
            )
            self.assertEqual(again, "https://app.example/bye?state=bye-2")

        await in_thread(flow)

    async def test_expired_hint(self) -> None:
        """
        An expired id_token_hint still identifies the client and user.
        """
        browser, client_id, _ = await self._login()
        expired = self.server.keys.sign(
            {
                "iss": self.server.issuer,
                "sub": "alice",
                "aud": client_id,
                "iat": 1000,
                "exp": 2000,
            },
            "RS256",
        )

        def flow() -> None:
            result = browser.get(
                self._end_url(
                    id_token_hint=expired,
                    post_logout_redirect_uri="https://app.example/bye",
                    state="s",
                )
            )
            self.assertEqual(result, "https://app.example/bye?state=s")
            page = browser.get(auth_url(self.server, client_id, prompt="none"))
            self.assertEqual(query_of(str(page))["error"], "login_required")

        await in_thread(flow)

    async def test_hint_of_retired_key(self) -> None:
        """
        A hint signed with a key that is no longer published still names
        its client: with a session the user confirms first, without one
        the browser goes on to the registered URI.
        """
        browser, client_id, _ = await self._login()
        unpublished = JWK.generate(kty="RSA", size=2048)
        hint = JWT(
            header={"alg": "RS256", "kid": "retired"},
            claims={
                "iss": self.server.issuer,
                "sub": "alice",
                "aud": client_id,
                "iat": 1000,
                "exp": 2000,
            },
        )
        hint.make_signed_token(unpublished)
        url = self._end_url(
            id_token_hint=hint.serialize(),
            post_logout_redirect_uri="https://app.example/bye",
            state="s",
        )

        def flow() -> None:
            page = browser.get(url)
            assert isinstance(page, requests.Response)
            self.assertEqual(page.status_code, 200)
            self.assertIn("Sign out", page.text)
            still = browser.get(auth_url(self.server, client_id, prompt="none"))
            self.assertIn("code", query_of(str(still)))

            self.assertEqual(
                Browser(self.server).get(url), "https://app.example/bye?state=s"
            )

        await in_thread(flow)

    async def test_without_hint_confirms(self) -> None:
        """
        Without a hint the user confirms with a CSRF-protected form first.
        """
        browser, client_id, _ = await self._login()

        def flow() -> None:
            page = browser.get(
                self._end_url(
                    client_id=client_id,
                    post_logout_redirect_uri="https://app.example/bye",
                    state="s",
                )
            )
            assert isinstance(page, requests.Response)
            self.assertIn("Sign out", page.text)
            # Still signed in until confirmed.
            self.assertIsInstance(
                browser.get(auth_url(self.server, client_id, prompt="none")), str
            )
            self.assertIn(
                "code",
                query_of(
                    str(browser.get(auth_url(self.server, client_id, prompt="none")))
                ),
            )
            result = browser.submit(page)
            self.assertEqual(result, "https://app.example/bye?state=s")
            after = browser.get(auth_url(self.server, client_id, prompt="none"))
            self.assertEqual(query_of(str(after))["error"], "login_required")

        await in_thread(flow)

    async def test_parameter_not_utf8(self) -> None:
        """
        A parameter that is not UTF-8 gets an error page instead of being
        left out: a state that is not UTF-8 is not dropped silently.
        """
        browser, client_id, id_token = await self._login()

        def flow() -> None:
            url = self._end_url(
                id_token_hint=id_token,
                post_logout_redirect_uri="https://app.example/bye",
            )
            page = browser.get(url + "&state=%FF")
            assert isinstance(page, requests.Response)
            self.assertEqual(page.status_code, 400)

        await in_thread(flow)

    async def test_post_without_cookie(self) -> None:
        """
        A POST without the session cookie, as a browser sends it from
        another site, neither clears the cookie nor signs anyone out: it is
        sent on as a GET request, where the user confirms.
        """
        browser, client_id, _ = await self._login()
        form = {
            "client_id": client_id,
            "post_logout_redirect_uri": "https://app.example/bye",
            "state": "s",
        }

        def flow() -> None:
            with http_session() as cross_site:
                response = cross_site.post(
                    self._end_url(), data=form, allow_redirects=False, timeout=10
                )
            self.assertEqual(response.status_code, 303)
            self.assertNotIn("Set-Cookie", response.headers)
            location = response.headers["Location"]
            self.assertTrue(location.startswith("/openid/session/end?"), location)
            self.assertEqual(query_of(location), form)

            page = browser.get(self.server.base_url + location)
            assert isinstance(page, requests.Response)
            self.assertIn("Sign out", page.text)
            still = browser.get(auth_url(self.server, client_id, prompt="none"))
            self.assertIn("code", query_of(str(still)))
            self.assertEqual(browser.submit(page), "https://app.example/bye?state=s")

        await in_thread(flow)

    async def test_unregistered_uri(self) -> None:
        """
        An unregistered post-logout URI gets an error page, not a redirect.
        """
        browser, client_id, id_token = await self._login()

        def flow() -> None:
            page = browser.get(
                self._end_url(
                    id_token_hint=id_token,
                    post_logout_redirect_uri="https://evil.example/",
                )
            )
            assert isinstance(page, requests.Response)
            self.assertEqual(page.status_code, 400)

        await in_thread(flow)
