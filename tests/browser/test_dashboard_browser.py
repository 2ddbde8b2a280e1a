"""
The dashboard in headless Chromium against a real server: sign-in, TOTP
enrolment and login, locked profiles, mandatory 2FA, app sessions, the
admin pages and the refusal of non-admins.

Each test runs the server on the reactor and the browser steps in the
browser's thread (see L{tests.browser.chromium}).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp

from idserver import totp
from idserver.ldap.access import AccessPolicy
from tests.browser.chromium import BrowserTestCase, screenshot
from tests.browser.server import PASSWORD, DashboardServer
from tests.test_dashboard import in_thread, token_request

# The redirect URI of the test app. The browser never reaches it: each
# test page fulfils requests to it itself (see _app_callback).
CALLBACK = "http://127.0.0.1:9/callback"

DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def code_at(secret: str, offset: int = 0) -> str:
    """
    Return the TOTP code of C{secret} for the current time step plus
    C{offset} steps. The server accepts one step either side and each step
    once, so a test uses the current step, then the next one.
    """
    return pyotp.TOTP(secret).at(time.time() + offset * totp.PERIOD)


def new_page(browser: Any, viewport: dict[str, int] = DESKTOP) -> Any:
    context = browser.new_context(ignore_https_errors=True, viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(15000)
    return page


def sign_in(page: Any, base: str, username: str, password: str = PASSWORD) -> None:
    """
    Open the dashboard, which sends the browser to the login form, and sign
    in with a password.
    """
    page.goto(base + "/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")


def sign_out(page: Any) -> None:
    page.click(".signout button")
    page.wait_for_selector("#password")


def _app_callback(page: Any) -> None:
    # Fulfil the app's callback inside the browser, so nothing is sent to
    # the loopback port in CALLBACK.
    page.route(CALLBACK + "*", lambda route: route.fulfill(body="app callback"))


class SignInTests(BrowserTestCase):
    """
    Signing in, TOTP, and what a user may see.
    """

    def setUp(self) -> Any:
        self.server = DashboardServer.start(self)
        return self.server.add_user("alice", display_name="Alice Liddell")

    async def test_first_sign_in(self) -> None:
        """
        A new user opens the dashboard, signs in with a password, lands on
        the home page named after the server, and signs out.
        """
        await self.server.directory.set_setting("name", "Example ID")

        def steps(browser: Any, base: str) -> dict[str, Any]:
            page = new_page(browser)
            page.goto(base + "/")
            login_title = page.title()
            sign_in(page, base, "alice")
            page.wait_for_selector("h1:text('Your apps')")
            result = {
                "url": page.url,
                "login_title": login_title,
                "brand": page.inner_text(".brand"),
                "who": page.inner_text(".who"),
            }
            sign_out(page)
            page.goto(base + "/")
            result["after_sign_out"] = page.url
            page.context.close()
            return result

        result = await self.browser.run(steps, self.server.base_url)
        self.assertEqual(result["url"], self.server.base_url + "/")
        self.assertEqual(result["login_title"], "Example ID")
        self.assertEqual(result["brand"], "Example ID")
        self.assertIn("Alice Liddell", result["who"])
        self.assertIn("/login", result["after_sign_out"])

    async def test_totp_enrolment_and_login(self) -> None:
        """
        A user enrols TOTP with the secret shown on the page and a code the
        test computes, then signs in again with password and code.
        """

        def steps(browser: Any, base: str) -> dict[str, Any]:
            page = new_page(browser)
            sign_in(page, base, "alice")
            page.wait_for_selector("h1:text('Your apps')")
            page.click("nav >> text=Password & 2FA")
            page.click("text=Set up two-factor authentication")
            secret = page.inner_text("#totp-secret").replace(" ", "")
            screenshot(page, "enrol-desktop")
            page.fill("#totp", "000000")
            page.click("text=Turn on two-factor authentication")
            wrong = page.inner_text("#totp-error")
            page.fill("#totp", code_at(secret))
            page.click("text=Turn on two-factor authentication")
            notice = page.inner_text(".alert-ok")
            sign_out(page)

            page.fill("#username", "alice")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("#totp")
            page.fill("#totp", code_at(secret, 1))
            page.click("text=Verify")
            page.wait_for_selector("h1:text('Your apps')")
            page.context.close()
            return {"wrong": wrong, "notice": notice}

        result = await self.browser.run(steps, self.server.base_url)
        self.assertIn("The code is wrong", result["wrong"])
        self.assertEqual(result["notice"], "Two-factor authentication is on.")
        alice = await self.server.directory.user_by_username("alice")
        assert alice is not None
        self.assertTrue(alice.totp_enabled)

    async def test_locked_profile(self) -> None:
        """
        With profiles locked, the profile page shows why and offers no way
        to change the name or addresses.
        """
        await self.server.directory.set_setting("lock_profile", True)

        def steps(browser: Any, base: str) -> dict[str, Any]:
            page = new_page(browser)
            sign_in(page, base, "alice")
            page.wait_for_selector("h1:text('Your apps')")
            page.click("nav >> text=Profile")
            result = {
                "reason": page.inner_text("#profile-locked"),
                "readonly": page.get_attribute("#display_name", "readonly"),
                "buttons": page.locator("main button").count(),
            }
            screenshot(page, "profile-locked-desktop")
            page.context.close()
            return result

        result = await self.browser.run(steps, self.server.base_url)
        self.assertIn("locked profiles", result["reason"])
        self.assertIsNotNone(result["readonly"])
        self.assertEqual(result["buttons"], 0)

    async def test_non_admin_refused(self) -> None:
        """
        A user without the admin role sees no admin links and gets 403 on
        an admin page.
        """

        def steps(browser: Any, base: str) -> dict[str, Any]:
            page = new_page(browser)
            sign_in(page, base, "alice")
            page.wait_for_selector("h1:text('Your apps')")
            links = page.locator("nav >> text=Users").count()
            response = page.goto(base + "/admin/users")
            result = {
                "links": links,
                "status": response.status,
                "text": page.inner_text("main"),
            }
            page.context.close()
            return result

        result = await self.browser.run(steps, self.server.base_url)
        self.assertEqual(result["links"], 0)
        self.assertEqual(result["status"], 403)
        self.assertIn("This page is for administrators", result["text"])


class AppSessionTests(BrowserTestCase):
    """
    App sessions seen and revoked in the browser.
    """

    async def test_revoke_app_session(self) -> None:
        """
        After a sign-in to an app, the app session is listed by the app's
        name; revoking it makes the app's refresh fail.
        """
        server = DashboardServer.start(self)
        await server.add_user("alice")
        app, secret = await server.add_client(name="Notes", redirect_uris=[CALLBACK])
        assert secret is not None
        query = urlencode(
            {
                "response_type": "code",
                "client_id": app.client_id,
                "redirect_uri": CALLBACK,
                "scope": "openid profile",
                "state": "s",
                "nonce": "n",
            }
        )

        def sign_in_to_app(browser: Any, base: str) -> tuple[Any, str]:
            page = new_page(browser)
            _app_callback(page)
            page.goto(f"{server.issuer}/auth?{query}")
            page.fill("#username", "alice")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(CALLBACK + "*")
            return page, parse_qs(urlsplit(page.url).query)["code"][0]

        page, code = await self.browser.run(sign_in_to_app, server.base_url)
        tokens = await in_thread(
            token_request,
            server,
            app.client_id,
            secret,
            grant_type="authorization_code",
            code=code,
            redirect_uri=CALLBACK,
        )
        self.assertIn("refresh_token", tokens)

        def revoke(browser: Any, base: str) -> dict[str, Any]:
            page.goto(base + "/account/sessions")
            listed = page.inner_text("#app-sessions")
            screenshot(page, "sessions-desktop")
            page.click("#app-sessions >> text=Revoke")
            result = {"listed": listed, "notice": page.inner_text(".alert-ok")}
            page.context.close()
            return result

        result = await self.browser.run(revoke, server.base_url)
        self.assertIn("Notes", result["listed"])
        self.assertEqual(result["notice"], "The app session was revoked.")
        refreshed = await in_thread(
            token_request,
            server,
            app.client_id,
            secret,
            grant_type="refresh_token",
            refresh_token=tokens["refresh_token"],
        )
        self.assertEqual(refreshed["error"], "invalid_grant")


class AdminTests(BrowserTestCase):
    """
    An administrator runs the server from the browser alone.
    """

    def setUp(self) -> Any:
        self.server = DashboardServer.start(self)
        return self.server.add_user("owner", display_name="Owner", role="admin")

    async def test_admin_pages(self) -> None:
        """
        The admin signs in and, in the browser, creates a user and a group,
        registers an OpenID client, enables the LDAP server and reads its
        settings, changes a setting and filters the audit log.
        """

        def steps(browser: Any, base: str) -> dict[str, Any]:
            result: dict[str, Any] = {}
            page = new_page(browser)
            sign_in(page, base, "owner")
            page.wait_for_selector("h1:text('Your apps')")

            page.click("nav >> text=Users")
            page.click("text=New user")
            page.fill("#username", "dave")
            page.fill("#email", "dave@example.com")
            page.fill("#display_name", "Dave Example")
            page.fill("#password", "dave's password")
            page.fill("#confirm_password", "dave's password")
            page.click("text=Create user")
            result["user"] = page.inner_text("h1")
            screenshot(page, "user-desktop")

            page.click("nav >> text=Groups")
            page.fill("#name", "staff")
            page.click("text=Create group")
            page.fill("#username", "dave")
            page.click("text=Add member")
            result["members"] = page.inner_text("#members")
            page.click("nav >> text=Groups")
            screenshot(page, "groups-desktop")

            page.click("nav >> text=OpenID clients")
            page.click("text=New client")
            page.fill("#name", "Wiki")
            page.fill("#redirect_uris", "https://wiki.example.com/callback")
            page.fill("#launch_url", "https://wiki.example.com/")
            page.check("text=staff")
            page.click("text=Create client")
            result["client_id"] = page.input_value("#credentials-client-id")
            result["client_secret"] = page.input_value("#credentials-client-secret")
            result["token_url"] = page.input_value("#endpoints-token")
            screenshot(page, "client-desktop")

            page.click("nav >> text=LDAP server")
            page.check("#enabled")
            page.fill("#allowlist", "127.0.0.1  # this host\n10.0.0.0/8")
            page.click("#ldap-access >> text=Save")
            result["ldap_status"] = page.inner_text("#ldap-status")
            page.click("text=Generate a new secret")
            result["ldap_secret"] = page.input_value("#ldap-secret-admin-secret")
            result["bind_dn"] = page.input_value("#ldap-client-bind-dn")
            result["users_dn"] = page.input_value("#ldap-client-users-dn")
            result["ldap_url"] = page.input_value("#ldap-client-url-ldaps")
            screenshot(page, "ldap-desktop")

            page.click("nav >> text=Settings")
            page.fill("#name", "Example ID")
            page.click("text=Save settings")
            result["brand"] = page.inner_text(".brand")

            page.click("nav >> text=Audit log")
            page.select_option("#type", "client")
            page.click("text=Filter")
            result["audit"] = page.inner_text("#audit")
            page.click("nav >> text=Users")
            screenshot(page, "users-desktop")
            page.click("nav >> text=Apps")
            screenshot(page, "home-desktop")

            page.set_viewport_size(PHONE)
            for name, path in (
                ("home", "/"),
                ("users", "/admin/users"),
                ("security", "/account/security"),
                ("ldap", "/admin/ldap"),
            ):
                page.goto(base + path)
                screenshot(page, f"{name}-phone")
            page.context.close()
            return result

        result = await self.browser.run(steps, self.server.base_url)
        directory = self.server.directory
        dave = await directory.user_by_username("dave")
        assert dave is not None
        self.assertEqual(result["user"], "User dave")
        self.assertTrue(await directory.check_password(dave.id, "dave's password"))
        group = await directory.group_by_name("staff")
        assert group is not None
        self.assertEqual(group.members, (dave.id,))
        self.assertIn("dave", result["members"])

        client = await self.server.oidc.clients.get_client(result["client_id"])
        assert client is not None
        self.assertEqual(client.allowed_group_ids, (group.id,))
        self.assertTrue(re.fullmatch(r"[A-Za-z0-9_-]{43}", result["client_secret"]))
        self.assertEqual(result["token_url"], self.server.issuer + "/token")

        settings = await directory.get_settings()
        policy = AccessPolicy.from_settings(settings)
        self.assertTrue(policy.enabled)
        self.assertTrue(policy.allows("10.2.3.4"))
        self.assertEqual(result["ldap_status"], "Enabled")
        self.assertTrue(result["ldap_secret"])
        self.assertEqual(result["bind_dn"], "cn=admin,ou=system,dc=cloudron")
        self.assertEqual(result["users_dn"], "ou=users,dc=cloudron")
        self.assertEqual(result["ldap_url"], "ldaps://id.example.com:636")

        self.assertEqual(settings["name"], "Example ID")
        self.assertEqual(result["brand"], "Example ID")
        self.assertIn("client.add", result["audit"])
        self.assertNotIn("group.add", result["audit"])

    async def test_mandatory_2fa_forces_enrolment(self) -> None:
        """
        Turning mandatory 2FA on signs out a user without 2FA at once; at
        the next login the user must enrol before reaching the dashboard.
        """
        await self.server.add_user("alice")
        owner = await self.server.directory.user_by_username("owner")
        assert owner is not None
        owner_secret = await self.server.directory.enable_totp(owner.id)

        def steps(browser: Any, base: str) -> dict[str, Any]:
            alice = new_page(browser)
            sign_in(alice, base, "alice")
            alice.wait_for_selector("h1:text('Your apps')")

            admin = new_page(browser)
            sign_in(admin, base, "owner")
            admin.fill("#totp", code_at(owner_secret))
            admin.click("text=Verify")
            admin.click("nav >> text=Settings")
            admin.check("#mandatory_2fa")
            admin.click("text=Save settings")
            notice = admin.inner_text(".alert-ok")
            admin.context.close()

            alice.goto(base + "/account/profile")
            signed_out = alice.url
            alice.fill("#username", "alice")
            alice.fill("#password", PASSWORD)
            alice.click("button[type=submit]")
            alice.wait_for_selector("img.qr")
            enrol_url = alice.url
            secret = alice.input_value("input[name=secret]")
            alice.fill("#totp", code_at(secret))
            alice.click("text=Turn on two-factor authentication")
            alice.wait_for_selector("h1:text('Profile')")
            alice.context.close()
            return {"notice": notice, "signed_out": signed_out, "enrol": enrol_url}

        result = await self.browser.run(steps, self.server.base_url)
        self.assertIn("the sessions of 1 user without 2FA ended", result["notice"])
        self.assertIn("/login", result["signed_out"])
        self.assertIn("/login/enrol", result["enrol"])
        alice = await self.server.directory.user_by_username("alice")
        assert alice is not None
        self.assertTrue(alice.totp_enabled)


class LayoutTests(BrowserTestCase):
    """
    The layout with long values and without JavaScript.
    """

    def setUp(self) -> Any:
        self.server = DashboardServer.start(self)
        return self.server.add_user("owner", display_name="Owner", role="admin")

    async def test_long_names_on_phone(self) -> None:
        """
        Names and URLs of the longest allowed length without spaces wrap
        on a phone instead of making the page wider than the screen.
        """
        directory = self.server.directory
        owner = await directory.user_by_username("owner")
        assert owner is not None
        await directory.set_setting("name", "S" * 128)
        await directory.update_user(owner.id, display_name="W" * 256)
        group = await directory.add_group("g" * 64)
        await directory.add_member(group.id, owner.id)
        client, _ = await self.server.add_client(
            name="N" * 128,
            redirect_uris=["https://app.example/" + "p" * 300],
            launch_url="https://" + "l" * 60 + ".example/",
            allowed_group_ids=[group.id],
        )
        await directory.record(
            "client.add",
            "failure",
            entry_point="web",
            actor="owner",
            subject=client.client_id,
            address="127.0.0.1",
            detail="D" * 300,
        )
        paths = [
            "/",
            "/account/profile",
            "/admin/users",
            f"/admin/users/{owner.id}",
            "/admin/groups",
            f"/admin/groups/{group.id}",
            "/admin/clients",
            f"/admin/clients/{client.client_id}",
            "/admin/clients/new",
            "/admin/audit",
        ]

        def steps(browser: Any, base: str) -> dict[str, int]:
            page = new_page(browser, PHONE)
            sign_in(page, base, "owner")
            page.wait_for_selector("h1:text('Your apps')")
            widths = {}
            for path in paths:
                page.goto(base + path)
                widths[path] = page.evaluate("document.documentElement.scrollWidth")
            page.context.close()
            return widths

        widths = await self.browser.run(steps, self.server.base_url)
        for path, width in widths.items():
            self.assertLessEqual(width, PHONE["width"], path)

    async def test_copy_buttons_without_javascript(self) -> None:
        """
        Without JavaScript the Copy buttons, which need it, stay hidden
        and the values are plain read-only fields.
        """

        def steps(browser: Any, base: str) -> dict[str, Any]:
            context = browser.new_context(
                ignore_https_errors=True, java_script_enabled=False
            )
            page = context.new_page()
            page.set_default_timeout(15000)
            sign_in(page, base, "owner")
            page.wait_for_selector("h1:text('Your apps')")
            page.goto(base + "/admin/clients")
            result = {
                "buttons": page.locator("button.copy").count(),
                "visible": page.locator("button.copy:visible").count(),
                "issuer": page.input_value("#endpoints-issuer"),
            }
            context.close()
            return result

        result = await self.browser.run(steps, self.server.base_url)
        self.assertGreater(result["buttons"], 0)
        self.assertEqual(result["visible"], 0)
        self.assertEqual(result["issuer"], self.server.issuer)
