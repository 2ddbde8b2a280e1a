"""
The login pages and authorization responses of the OpenID Connect
provider in headless Chromium: what only a browser checks, such as the
Content-Security-Policy of the form_post page and the refusal to be framed.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.browser.chromium import BrowserTestCase
from tests.oidc_server import PASSWORD, REDIRECT_URI, OIDCServer, auth_url

# A page on another origin that frames the login page. The browser never
# reaches this host: the test fulfils the request itself.
FRAMING_PAGE = "https://framing.example/"


# A client application's site that sends forms to the provider.
CLIENT_SITE = "https://client-site.example/"


def _auto_post(action: str, fields: dict[str, str]) -> str:
    """
    Return a page that POSTs C{fields} to C{action} as soon as it loads.
    """
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    return (
        f'<form id="f" method="post" action="{html.escape(action)}">{inputs}</form>'
        '<script>document.getElementById("f").submit()</script>'
    )


def _new_page(browser: Any) -> Any:
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(15000)
    return page


class OpenIDBrowserTests(BrowserTestCase):
    """
    Authorization responses and login pages in a real browser.
    """

    def setUp(self) -> Any:
        self.server = OIDCServer.start(self)
        return self.server.add_user("alice")

    async def test_form_post_submits(self) -> None:
        """
        With response_mode=form_post the browser posts code, state and iss
        to the redirect URI by itself: the page's script runs under its
        Content-Security-Policy.
        """
        client, _ = await self.server.add_client()
        url = auth_url(
            self.server, client.client_id, response_mode="form_post", state='s"<1>'
        )

        def steps(browser: Any) -> dict[str, Any]:
            page = _new_page(browser)
            posted: dict[str, Any] = {}
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))

            def callback(route: Any, request: Any) -> None:
                posted.update(method=request.method, body=request.post_data)
                route.fulfill(body="app callback")

            page.route(REDIRECT_URI + "*", callback)
            page.goto(url)
            page.fill("#username", "alice")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(REDIRECT_URI)
            page.context.close()
            return {"posted": posted, "console": console}

        result = await self.browser.run(steps)
        self.assertEqual(result["console"], [])
        self.assertEqual(result["posted"]["method"], "POST")
        fields = parse_qs(result["posted"]["body"])
        self.assertEqual(fields["state"], ['s"<1>'])
        self.assertEqual(fields["iss"], [self.server.issuer])
        self.assertEqual(len(fields["code"]), 1)

    async def test_login_page_not_framed(self) -> None:
        """
        A page of another site cannot show the login page in a frame.
        """
        login_url = self.server.base_url + "/login"

        def steps(browser: Any) -> tuple[str, int]:
            page = _new_page(browser)
            page.route(
                FRAMING_PAGE,
                lambda route: route.fulfill(
                    content_type="text/html",
                    body=f'<iframe src="{login_url}"></iframe>',
                ),
            )
            # Chromium refuses the test certificate inside a frame whatever
            # the headers say, so the login page is fetched by Playwright
            # and handed to the frame with the server's headers.
            page.route(
                login_url,
                lambda route: route.fulfill(response=route.fetch()),
            )
            page.goto(FRAMING_PAGE)
            page.wait_for_load_state("load")
            frame = page.frames[1]
            fields = frame.query_selector_all("#password")
            page.context.close()
            return frame.url, len(fields)

        frame_url, password_fields = await self.browser.run(steps)
        self.assertNotEqual(frame_url, login_url)
        self.assertEqual(password_fields, 0)

    async def test_cross_site_posts(self) -> None:
        """
        A POST from another site's page, which carries no SameSite=Lax
        cookie, still finds the signed-in user: an authorization request
        with prompt=none gets a code, and end session asks the user to
        confirm instead of signing them out unasked.
        """
        client, _ = await self.server.add_client(
            post_logout_redirect_uris=["https://app.example/bye"]
        )
        authorization = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": "cross-site",
            "prompt": "none",
        }
        logout = {
            "client_id": client.client_id,
            "post_logout_redirect_uri": "https://app.example/bye",
            "state": "bye",
        }
        issuer = self.server.issuer

        def steps(browser: Any) -> dict[str, Any]:
            page = _new_page(browser)
            page.route(REDIRECT_URI + "*", lambda route: route.fulfill(body="app"))
            page.goto(auth_url(self.server, client.client_id))
            page.fill("#username", "alice")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(REDIRECT_URI + "*")

            page.route(
                CLIENT_SITE + "auth",
                lambda route: route.fulfill(
                    content_type="text/html",
                    body=_auto_post(issuer + "/auth", authorization),
                ),
            )
            page.goto(CLIENT_SITE + "auth")
            page.wait_for_url(REDIRECT_URI + "*")
            result = {"authorization": page.url}

            page.route(
                CLIENT_SITE + "logout",
                lambda route: route.fulfill(
                    content_type="text/html",
                    body=_auto_post(issuer + "/session/end", logout),
                ),
            )
            page.goto(CLIENT_SITE + "logout")
            page.wait_for_url(issuer + "/session/end*")
            page.wait_for_selector("button[type=submit]")
            result["logout_page"] = page.content()

            # Playwright does not route the target of a redirect that
            # page.goto follows, so the session is checked on a page of the
            # provider instead of through another authorization.
            page.goto(self.server.base_url + "/login/done")
            result["after"] = page.url
            page.context.close()
            return result

        result = await self.browser.run(steps)
        query = parse_qs(urlsplit(result["authorization"]).query)
        self.assertEqual(query["state"], ["cross-site"])
        self.assertIn("code", query)
        self.assertIn("Sign out", result["logout_page"])
        self.assertEqual(result["after"], self.server.base_url + "/login/done")
