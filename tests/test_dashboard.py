"""
The dashboard pages every user has, over a real TLS listener: sign-in,
apps, profile, password, 2FA, app sessions, CSRF and session expiry.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from idserver import totp
from idserver.interfaces import ISessionStore
from idserver.model import User
from idserver.sessions.maintenance import end_sessions_without_2fa
from idserver.sessions.model import secret_key
from tests.browser.server import (
    PASSWORD,
    REDIRECT_URI,
    DashboardServer,
    WebClient,
)


def in_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    return deferToThread(function, *args, **kwargs)


def field_error(page: str, name: str) -> str | None:
    """
    Return the error shown under the input C{name}, or C{None}.
    """
    match = re.search(
        rf'<p class="field-error" id="{re.escape(name)}-error">([^<]*)</p>', page
    )
    return None if match is None else match.group(1)


def code_at(secret: str, offset: int = 0) -> str:
    """
    Return the TOTP code of C{secret} for the current time step plus
    C{offset} steps.
    """
    import pyotp

    return pyotp.TOTP(secret).at(time.time() + offset * totp.PERIOD)


def code_flow(client: WebClient, client_id: str, secret: str) -> dict[str, Any]:
    """
    Run the authorization code flow as an app would, with the browser
    session of C{client}, and return the token response.
    """
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        .rstrip(b"=")
        .decode()
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile",
            "state": "s",
            "nonce": "n",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    response = client.session.get(
        f"{client.server.issuer}/auth?{query}", allow_redirects=False, timeout=10
    )
    assert response.status_code in (302, 303), response.text
    location = response.headers["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    return token_request(
        client.server,
        client_id,
        secret,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT_URI,
        code_verifier=verifier,
    )


def token_request(
    server: DashboardServer, client_id: str, secret: str, **data: str
) -> dict[str, Any]:
    with requests.Session() as session:
        session.trust_env = False
        response = session.post(
            f"{server.issuer}/token",
            data=data,
            auth=(client_id, secret),
            verify=False,
            timeout=10,
        )
    body: dict[str, Any] = response.json()
    body["status"] = response.status_code
    return body


class DashboardTestCase(TestCase):
    """
    Starts a server with one user, C{alice}, for each test.
    """

    def setUp(self) -> Any:
        self.server = DashboardServer.start(self)
        return self._add_alice()

    async def _add_alice(self) -> None:
        self.alice = await self.server.add_user("alice", display_name="Alice Liddell")

    async def signed_in(self, username: str = "alice", **options: Any) -> WebClient:
        client = WebClient(self.server)
        response = await in_thread(client.login, username, **options)
        self.assertEqual(response.status_code, 200, response.text)
        return client

    async def user(self, user: User) -> User:
        return await self.server.directory.get_user(user.id)


class SignInTests(DashboardTestCase):
    """
    Reaching the dashboard, and the session that carries it.
    """

    async def test_anonymous_redirected_to_login(self) -> None:
        """
        Opening the dashboard without a session leads to the login form,
        which returns to the page that was asked for.
        """
        client = WebClient(self.server)
        response = await in_thread(client.get, "/account/profile")
        self.assertIn('name="password"', response.text)
        self.assertIn('value="/account/profile"', response.text)

    async def test_login_lands_on_home(self) -> None:
        """
        After signing in the browser is on the home page, titled with the
        server name, and the layout links the stylesheet of the server.
        """
        await self.server.directory.set_setting("name", "Example ID")
        client = await self.signed_in()
        self.assertIn("<title>Your apps · Example ID</title>", client.page)
        self.assertIn('href="/static/dashboard.css"', client.page)
        css = await in_thread(client.get, "/static/dashboard.css")
        self.assertEqual(css.status_code, 200)
        self.assertNotIn("http://", client.page.split("<body", 1)[0])

    async def test_security_headers(self) -> None:
        """
        Dashboard pages forbid framing and forms that post to other sites,
        and are not cached.
        """
        client = await self.signed_in()
        response = await in_thread(client.get, "/")
        policy = response.headers["Content-Security-Policy"]
        self.assertIn("frame-ancestors 'none'", policy)
        self.assertIn("default-src 'self'", policy)
        self.assertIn("form-action 'self'", policy)
        self.assertEqual(response.headers["Cache-Control"], "no-store")

    async def test_doubled_slashes_not_redirected(self) -> None:
        """
        A path with doubled slashes is not found, rather than redirected to
        a URL built from the Host header the client sent.
        """
        client = await self.signed_in()
        for path in (
            "/account//profile",
            "/admin/users//new",
            "/account/sessions//",
            "/login//totp",
            "/openid//auth",
            "/static//idserver.css",
            "//healthz",
        ):
            response = await in_thread(
                client.session.get,
                self.server.base_url + path,
                headers={"Host": "evil.example"},
                allow_redirects=False,
                timeout=10,
            )
            self.assertEqual(response.status_code, 404, path)
            self.assertNotIn("Location", response.headers, path)

    async def test_idle_session_expires(self) -> None:
        """
        A session unused for longer than the idle timeout is over: the next
        request goes to the login form.
        """
        client = await self.signed_in()
        key = secret_key(client.cookie())
        store = self.server.oidc.store
        await store.touch_session(key, time.time() - 2 * 86400)
        response = await in_thread(client.get, "/")
        self.assertIn('name="password"', response.text)
        self.assertIsNone(await store.get_session(key))

    async def test_form_without_csrf_token(self) -> None:
        """
        A form sent without the session's CSRF token is rejected and
        changes nothing.
        """
        client = await self.signed_in()
        response = await in_thread(
            client.post,
            "/account/profile",
            {"display_name": "Mallory", "email": "alice@example.com"},
            csrf=False,
        )
        self.assertEqual(response.status_code, 403)
        self.assertIn("The form has expired", response.text)
        self.assertEqual((await self.user(self.alice)).display_name, "Alice Liddell")

    async def test_wrong_csrf_token(self) -> None:
        """
        A token of another session does not pass.
        """
        client = await self.signed_in()
        other = await self.signed_in()
        await in_thread(other.get, "/account/profile")
        response = await in_thread(
            client.post,
            "/account/profile",
            {
                "display_name": "Mallory",
                "email": "alice@example.com",
                "csrf_token": re.findall(
                    r'name="csrf_token" value="([^"]*)"', other.page
                )[0],
            },
        )
        self.assertEqual(response.status_code, 403)

    async def test_non_admin_refused(self) -> None:
        """
        Every admin page returns 403 to a user without the admin role, and
        the navigation does not offer them.
        """
        client = await self.signed_in()
        self.assertNotIn("/admin/users", client.page)
        for path in (
            "/admin/users",
            "/admin/users/new",
            f"/admin/users/{self.alice.id}",
            "/admin/groups",
            "/admin/clients",
            "/admin/clients/new",
            "/admin/settings",
            "/admin/audit",
        ):
            response = await in_thread(client.get, path)
            self.assertEqual(response.status_code, 403, path)
        response = await in_thread(
            client.post, "/admin/settings", {"name": "Taken over"}
        )
        self.assertEqual(response.status_code, 403)
        settings = await self.server.directory.get_settings()
        self.assertNotEqual(settings["name"], "Taken over")


class HomeTests(DashboardTestCase):
    """
    The home page's list of apps.
    """

    async def test_apps_by_group(self) -> None:
        """
        The home page lists the apps without a group restriction and those
        allowing a group of the user, with their launch links.
        """
        staff = await self.server.directory.add_group("staff")
        other = await self.server.directory.add_group("other")
        await self.server.directory.add_member(staff.id, self.alice.id)
        await self.server.add_client(name="Wiki", launch_url="https://wiki.example/")
        await self.server.add_client(name="Staff chat", allowed_group_ids=[staff.id])
        await self.server.add_client(name="Payroll", allowed_group_ids=[other.id])
        client = await self.signed_in()
        self.assertIn('href="https://wiki.example/"', client.page)
        self.assertIn("Staff chat", client.page)
        self.assertNotIn("Payroll", client.page)

    async def test_admin_sees_every_app(self) -> None:
        """
        Admins may use every app, so every app is listed for them.
        """
        group = await self.server.directory.add_group("other")
        await self.server.add_client(name="Payroll", allowed_group_ids=[group.id])
        await self.server.add_user("boss", role="admin")
        client = await self.signed_in("boss")
        self.assertIn("Payroll", client.page)


class ProfileTests(DashboardTestCase):
    """
    Editing one's own profile.
    """

    async def test_edit_profile(self) -> None:
        """
        A user changes their name and addresses; a new email address counts
        as unverified.
        """
        client = await self.signed_in()
        await in_thread(client.get, "/account/profile")
        response = await in_thread(
            client.post,
            "/account/profile",
            {
                "display_name": "Alice Pleasance",
                "email": "Alice@Wonderland.example",
                "fallback_email": "alice@backup.example",
            },
        )
        self.assertIn("Your profile was saved.", response.text)
        user = await self.user(self.alice)
        self.assertEqual(user.display_name, "Alice Pleasance")
        self.assertEqual(user.email, "alice@wonderland.example")
        self.assertEqual(user.fallback_email, "alice@backup.example")
        self.assertFalse(user.email_verified)

    async def test_invalid_email_next_to_field(self) -> None:
        """
        An invalid address is reported under the email input with the
        directory's text, and nothing is saved.
        """
        client = await self.signed_in()
        await in_thread(client.get, "/account/profile")
        response = await in_thread(
            client.post,
            "/account/profile",
            {"display_name": "Alice", "email": "not-an-address", "fallback_email": ""},
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            field_error(response.text, "email"),
            "The email address &#x27;not-an-address&#x27; is invalid.",
        )
        self.assertIn('value="not-an-address"', response.text)
        self.assertEqual((await self.user(self.alice)).email, "alice@example.com")

    async def test_taken_email(self) -> None:
        """
        An address of another user is reported under the email input.
        """
        await self.server.add_user("bob")
        client = await self.signed_in()
        await in_thread(client.get, "/account/profile")
        response = await in_thread(
            client.post,
            "/account/profile",
            {"display_name": "Alice", "email": "bob@example.com"},
        )
        self.assertEqual(response.status_code, 400)
        self.assertIsNotNone(field_error(response.text, "email"))

    async def test_locked_profile(self) -> None:
        """
        With lock_profile on, the profile is shown read-only with the
        reason, and a sent form changes nothing.
        """
        client = await self.signed_in()
        await in_thread(client.get, "/account/profile")
        token = re.findall(r'name="csrf_token" value="([^"]*)"', client.page)[0]
        await self.server.directory.set_setting("lock_profile", True)
        response = await in_thread(client.get, "/account/profile")
        self.assertIn('id="profile-locked"', response.text)
        self.assertIn("locked profiles", response.text)
        self.assertIn("readonly", response.text)
        self.assertNotIn('action="/account/profile"', response.text)
        response = await in_thread(
            client.post,
            "/account/profile",
            {"display_name": "Changed", "email": "x@example.com", "csrf_token": token},
        )
        self.assertEqual(response.status_code, 403)
        self.assertEqual((await self.user(self.alice)).display_name, "Alice Liddell")

    async def test_locked_profile_admin(self) -> None:
        """
        Admins may still edit their own profile when profiles are locked.
        """
        await self.server.directory.set_setting("lock_profile", True)
        await self.server.add_user("boss", role="admin")
        client = await self.signed_in("boss")
        response = await in_thread(client.get, "/account/profile")
        self.assertIn('action="/account/profile"', response.text)

    async def test_external_user(self) -> None:
        """
        An external user's profile is read-only, with the reason.
        """
        await self.server.add_user("ext", source="ldap", external_id="e-1")
        client = await self.signed_in("ext")
        response = await in_thread(client.get, "/account/profile")
        self.assertIn("external directory", response.text)
        self.assertNotIn('action="/account/profile"', response.text)


class PasswordTests(DashboardTestCase):
    """
    Changing one's own password.
    """

    async def change(self, client: WebClient, **fields: str) -> requests.Response:
        await in_thread(client.get, "/account/security")
        values = {
            "current_password": PASSWORD,
            "new_password": "a much better secret",
            "confirm_password": "a much better secret",
        }
        values.update(fields)
        response: requests.Response = await in_thread(
            client.post, "/account/password", values
        )
        return response

    async def test_change_password(self) -> None:
        """
        A new password works at once; the other sessions and the app
        sessions of the user end, but this browser stays signed in.
        """
        app, secret = await self.server.add_client()
        assert secret is not None
        client = await self.signed_in()
        other = await self.signed_in()
        tokens = await in_thread(code_flow, other, app.client_id, secret)
        self.assertEqual(tokens["status"], 200, tokens)

        response = await self.change(client)
        self.assertIn("Your password was changed.", response.text)
        self.assertTrue(
            await self.server.directory.check_password(
                self.alice.id, "a much better secret"
            )
        )
        response = await in_thread(other.get, "/")
        self.assertIn('name="password"', response.text)
        response = await in_thread(client.get, "/account/profile")
        self.assertIn("Alice Liddell", response.text)
        refreshed = await in_thread(
            token_request,
            self.server,
            app.client_id,
            secret,
            grant_type="refresh_token",
            refresh_token=tokens["refresh_token"],
        )
        self.assertEqual(refreshed["error"], "invalid_grant")

    async def test_wrong_current_password(self) -> None:
        """
        A wrong current password is reported under its input and counts as
        a failed login in the audit log.
        """
        client = await self.signed_in()
        response = await self.change(client, current_password="wrong password")
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            field_error(response.text, "current_password"), "The password is wrong."
        )
        events = await self.server.directory.events(user="alice", kind="login.failed")
        self.assertEqual(events[0].detail, "wrong password")

    async def test_rate_limited(self) -> None:
        """
        Past the failure limit the right current password is not checked,
        and the form says so instead of calling it wrong.
        """
        client = await self.signed_in()
        logins = self.server.oidc.logins
        for _ in range(logins.user_limit):
            await logins.rate_limits.add_failure(f"user:{self.alice.id}", 300.0)
        response = await self.change(client)
        self.assertEqual(response.status_code, 400)
        self.assertIn(
            "Too many failed attempts",
            field_error(response.text, "current_password") or "",
        )
        self.assertFalse(
            await self.server.directory.check_password(
                self.alice.id, "a much better secret"
            )
        )

    async def test_rules_of_the_directory(self) -> None:
        """
        A short password gets the same text as the command line, under the
        new password input.
        """
        client = await self.signed_in()
        response = await self.change(
            client, new_password="short", confirm_password="short"
        )
        self.assertEqual(
            field_error(response.text, "new_password"),
            "The password is too short: at least 8 characters.",
        )

    async def test_passwords_differ(self) -> None:
        """
        Two different new passwords are reported under the second one.
        """
        client = await self.signed_in()
        response = await self.change(client, confirm_password="something else")
        self.assertEqual(
            field_error(response.text, "confirm_password"),
            "The passwords do not match.",
        )


class TOTPTests(DashboardTestCase):
    """
    Enrolling and removing TOTP.
    """

    async def enrol(self, client: WebClient) -> str:
        await in_thread(client.get, "/account/security")
        response = await in_thread(client.post, "/account/totp/start")
        match = re.search(r'name="secret" value="([A-Z2-7]+)"', response.text)
        assert match is not None, response.text
        self.assertIn('src="data:image/svg+xml;base64,', response.text)
        return match.group(1)

    async def test_enrol(self) -> None:
        """
        The secret is active only after one valid code; a wrong code leaves
        2FA off and shows the same secret again.
        """
        client = await self.signed_in()
        secret = await self.enrol(client)
        self.assertFalse((await self.user(self.alice)).totp_enabled)

        response = await in_thread(
            client.post, "/account/totp/confirm", {"totp": "000000", "secret": secret}
        )
        self.assertEqual(response.status_code, 400)
        self.assertIsNotNone(field_error(response.text, "totp"))
        self.assertIn(secret, response.text)
        self.assertFalse((await self.user(self.alice)).totp_enabled)

        response = await in_thread(
            client.post,
            "/account/totp/confirm",
            {"totp": code_at(secret), "secret": secret},
        )
        self.assertIn("Two-factor authentication is on.", response.text)
        self.assertTrue((await self.user(self.alice)).totp_enabled)
        events = await self.server.directory.events(user="alice", kind="totp.enable")
        self.assertEqual([e.outcome for e in events], ["success", "failure"])

    async def test_remove(self) -> None:
        """
        Turning 2FA off needs the password.
        """
        client = await self.signed_in()
        await self.server.directory.enable_totp(self.alice.id)
        response = await in_thread(client.get, "/account/security")
        self.assertIn('id="totp-on"', response.text)
        response = await in_thread(
            client.post, "/account/totp/remove", {"password": "wrong password"}
        )
        self.assertEqual(
            field_error(response.text, "password"), "The password is wrong."
        )
        self.assertTrue((await self.user(self.alice)).totp_enabled)
        response = await in_thread(
            client.post, "/account/totp/remove", {"password": PASSWORD}
        )
        self.assertIn("Two-factor authentication is off.", response.text)
        self.assertFalse((await self.user(self.alice)).totp_enabled)

    async def test_remove_when_mandatory(self) -> None:
        """
        With mandatory 2FA the page offers no removal and a sent form is
        rejected.
        """
        client = await self.signed_in()
        await self.server.directory.enable_totp(self.alice.id)
        await self.server.directory.set_setting("mandatory_2fa", True)
        response = await in_thread(client.get, "/account/security")
        self.assertIn("mandatory on this server", response.text)
        response = await in_thread(
            client.post, "/account/totp/remove", {"password": PASSWORD}
        )
        self.assertEqual(response.status_code, 400)
        self.assertTrue((await self.user(self.alice)).totp_enabled)


class AppSessionTests(DashboardTestCase):
    """
    Listing and revoking app sessions.
    """

    async def test_revoke(self) -> None:
        """
        The app session is listed with the app's name; revoking it makes
        its refresh token fail at once.
        """
        app, secret = await self.server.add_client(name="Notes")
        assert secret is not None
        client = await self.signed_in()
        tokens = await in_thread(code_flow, client, app.client_id, secret)
        response = await in_thread(client.get, "/account/sessions")
        self.assertIn("Notes", response.text)
        grant_id = re.findall(r'name="grant" value="([^"]*)"', response.text)[0]

        response = await in_thread(
            client.post, "/account/sessions/revoke", {"grant": grant_id}
        )
        self.assertIn("The app session was revoked.", response.text)
        self.assertNotIn(grant_id, response.text)
        refreshed = await in_thread(
            token_request,
            self.server,
            app.client_id,
            secret,
            grant_type="refresh_token",
            refresh_token=tokens["refresh_token"],
        )
        self.assertEqual(refreshed["error"], "invalid_grant")
        userinfo = await in_thread(
            client.session.get,
            f"{self.server.issuer}/me",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            timeout=10,
        )
        self.assertEqual(userinfo.status_code, 401)

    async def test_revoke_other_users_grant(self) -> None:
        """
        A user cannot revoke another user's app session.
        """
        app, secret = await self.server.add_client()
        assert secret is not None
        await self.server.add_user("bob")
        bob = await self.signed_in("bob")
        await in_thread(code_flow, bob, app.client_id, secret)
        bob_user = await self.server.directory.user_by_username("bob")
        assert bob_user is not None
        (grant,) = await self.server.oidc.store.grants_of(bob_user.id)

        client = await self.signed_in()
        await in_thread(client.get, "/account/sessions")
        response = await in_thread(
            client.post, "/account/sessions/revoke", {"grant": grant.id}
        )
        self.assertEqual(response.status_code, 404)
        self.assertIsNotNone(await self.server.oidc.store.get_grant(grant.id))

    async def test_sign_out_other_browser(self) -> None:
        """
        The user's other browser sessions are listed and can be ended.
        """
        client = await self.signed_in()
        other = await self.signed_in()
        response = await in_thread(client.get, "/account/sessions")
        sid = re.findall(r'name="sid" value="([^"]*)"', response.text)
        self.assertEqual(len(sid), 1)
        await in_thread(client.post, "/account/sessions/signout", {"sid": sid[0]})
        response = await in_thread(other.get, "/")
        self.assertIn('name="password"', response.text)

    async def test_sign_out_other_users_browser(self) -> None:
        """
        A user cannot end another user's browser session with its id.
        """
        await self.server.add_user("bob")
        bob = await self.signed_in("bob")
        bob_user = await self.server.directory.user_by_username("bob")
        assert bob_user is not None
        (session,) = await self.server.oidc.store.sessions_of(bob_user.id)

        client = await self.signed_in()
        await in_thread(client.get, "/account/sessions")
        response = await in_thread(
            client.post, "/account/sessions/signout", {"sid": session.sid}
        )
        self.assertEqual(response.status_code, 404)
        response = await in_thread(bob.get, "/account/profile")
        self.assertNotIn('name="password"', response.text)


class MandatoryTOTPTests(DashboardTestCase):
    """
    Ending the sessions of users without 2FA.
    """

    async def test_end_sessions_without_2fa(self) -> None:
        """
        Users without 2FA lose their browser and app sessions; users with
        2FA keep theirs.
        """
        verifyObject(ISessionStore, self.server.oidc.store)
        app, secret = await self.server.add_client()
        assert secret is not None
        client = await self.signed_in()
        tokens = await in_thread(code_flow, client, app.client_id, secret)
        carol = await self.server.add_user("carol")
        carol_client = await self.signed_in("carol")
        await self.server.directory.enable_totp(carol.id)

        await self.server.directory.set_setting("mandatory_2fa", True)
        ended = await end_sessions_without_2fa(
            self.server.directory, self.server.oidc.store
        )
        self.assertEqual(len(ended), 1)
        store = self.server.oidc.store
        self.assertEqual(await store.sessions_of(self.alice.id), [])
        self.assertEqual(await store.grants_of(self.alice.id), [])
        self.assertEqual(len(await store.sessions_of(carol.id)), 1)
        response = await in_thread(carol_client.get, "/account/profile")
        self.assertIn("carol", response.text)
        refreshed = await in_thread(
            token_request,
            self.server,
            app.client_id,
            secret,
            grant_type="refresh_token",
            refresh_token=tokens["refresh_token"],
        )
        self.assertEqual(refreshed["error"], "invalid_grant")
