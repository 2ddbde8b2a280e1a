"""
The dashboard's admin pages over a real TLS listener: users, groups,
settings, OpenID clients and the audit log.
"""

from __future__ import annotations

import re
from typing import Any

from idserver.ldap.access import AccessPolicy, check_generated_secret
from idserver.oidc.clients import hash_client_secret
from tests.browser.server import PASSWORD, WebClient
from tests.test_dashboard import (
    DashboardTestCase,
    code_flow,
    field_error,
    in_thread,
    token_request,
)


class AdminTestCase(DashboardTestCase):
    """
    Adds an admin, C{owner}, signed in as C{self.admin}.
    """

    async def _add_alice(self) -> None:
        await super()._add_alice()
        self.owner = await self.server.add_user("owner", role="admin")
        self.admin = await self.signed_in("owner")

    async def post(self, path: str, data: dict[str, Any] | None = None) -> Any:
        """
        Open C{path} for its form's token, then send the form there or to
        C{action}.
        """
        page, _, action = path.partition(" ")
        await in_thread(self.admin.get, page)
        return await in_thread(self.admin.post, action or page, data or {})


class UserAdminTests(AdminTestCase):
    """
    The user pages.
    """

    async def test_create_user(self) -> None:
        """
        An admin creates a user with a password, who can then sign in.
        """
        response = await self.post(
            "/admin/users/new",
            {
                "username": "Dave",
                "email": "dave@example.com",
                "display_name": "Dave",
                "role": "user",
                "password": "dave's password",
                "confirm_password": "dave's password",
            },
        )
        self.assertIn("The user was created.", response.text)
        self.assertIn("User dave", response.text)
        user = await self.server.directory.user_by_username("dave")
        assert user is not None
        self.assertTrue(user.email_verified)
        client = WebClient(self.server)
        response = await in_thread(client.login, "dave", "dave's password")
        self.assertIn("Your apps", response.text)

    async def test_create_reserved_username(self) -> None:
        """
        A reserved username is reported under its input with the text the
        command line prints, and the other values stay filled in.
        """
        response = await self.post(
            "/admin/users/new",
            {"username": "root", "email": "root@example.com", "role": "user"},
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            field_error(response.text, "username"),
            "The username &#x27;root&#x27; is reserved.",
        )
        self.assertIn('value="root@example.com"', response.text)

    async def test_create_taken_username(self) -> None:
        """
        A taken username is reported under its input.
        """
        response = await self.post(
            "/admin/users/new",
            {"username": "alice", "email": "other@example.com", "role": "user"},
        )
        self.assertEqual(
            field_error(response.text, "username"),
            "The username &#x27;alice&#x27; is taken.",
        )

    async def test_search_and_paging(self) -> None:
        """
        The list pages through users and searches them.
        """
        for number in range(30):
            await self.server.add_user(f"user{number:02}", password=None)
        response = await in_thread(self.admin.get, "/admin/users")
        self.assertIn("Page 1 of 2 · 32 users", response.text)
        self.assertIn("alice", response.text)
        self.assertNotIn(">user29<", response.text)
        response = await in_thread(self.admin.get, "/admin/users?page=2")
        self.assertIn(">user29<", response.text)
        response = await in_thread(self.admin.get, "/admin/users?q=user1")
        self.assertIn("10 users", response.text)
        self.assertNotIn(">alice<", response.text)

    async def test_edit_user(self) -> None:
        """
        An admin changes a user's details; disabling ends the user's
        sessions.
        """
        alice = await self.signed_in()
        response = await self.post(
            f"/admin/users/{self.alice.id}",
            {
                "display_name": "Alice L.",
                "email": "alice@new.example",
                "fallback_email": "",
                "role": "admin",
                "active": "false",
            },
        )
        self.assertIn("The user was saved.", response.text)
        user = await self.user(self.alice)
        self.assertEqual(
            (user.display_name, user.email, user.role.value, user.active),
            ("Alice L.", "alice@new.example", "admin", False),
        )
        response = await in_thread(alice.get, "/")
        self.assertIn('name="password"', response.text)

    async def test_last_admin(self) -> None:
        """
        The last active admin cannot demote themselves; the error is shown.
        """
        response = await self.post(
            f"/admin/users/{self.owner.id}",
            {
                "display_name": "",
                "email": "owner@example.com",
                "role": "user",
                "active": ["false", "true"],
            },
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            field_error(response.text, "role"),
            "Cannot demote &#x27;owner&#x27;: it is the last active admin. Make"
            " another user an admin first.",
        )
        self.assertTrue((await self.user(self.owner)).is_admin)

    async def test_demote_self(self) -> None:
        """
        An admin who removes their own admin role, while another admin
        remains, lands on the home page instead of a 403 page.
        """
        await self.server.add_user("boss", role="admin")
        response = await self.post(
            f"/admin/users/{self.owner.id}",
            {
                "display_name": "",
                "email": "owner@example.com",
                "role": "user",
                "active": ["false", "true"],
            },
        )
        self.assertEqual(response.status_code, 200)
        self.assertIn("<h1>Your apps</h1>", response.text)
        self.assertNotIn("/admin/users", response.text)
        self.assertFalse((await self.user(self.owner)).is_admin)

    async def test_edit_locked_profile(self) -> None:
        """
        Admins may edit a user's profile while profiles are locked.
        """
        await self.server.directory.set_setting("lock_profile", True)
        await self.post(
            f"/admin/users/{self.alice.id}",
            {
                "display_name": "Locked but changed",
                "email": "alice@example.com",
                "role": "user",
                "active": ["false", "true"],
            },
        )
        self.assertEqual(
            (await self.user(self.alice)).display_name, "Locked but changed"
        )

    async def test_external_user_fields(self) -> None:
        """
        An external user's email and name are read-only, with the command
        line's text.
        """
        ext = await self.server.add_user("ext", source="ldap", external_id="e-1")
        response = await self.post(
            f"/admin/users/{ext.id}",
            {
                "display_name": "",
                "email": "changed@example.com",
                "role": "user",
                "active": ["false", "true"],
            },
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            field_error(response.text, "email"),
            "The user &#x27;ext&#x27; comes from the external directory, so the"
            " email address and display name can only be changed there.",
        )

    async def test_set_password(self) -> None:
        """
        An admin sets a password; the user's sessions end.
        """
        alice = await self.signed_in()
        response = await self.post(
            f"/admin/users/{self.alice.id} /admin/users/{self.alice.id}/password",
            {"password": "set by the admin", "confirm_password": "set by the admin"},
        )
        self.assertIn("The password was set.", response.text)
        self.assertTrue(
            await self.server.directory.check_password(
                self.alice.id, "set by the admin"
            )
        )
        response = await in_thread(alice.get, "/")
        self.assertIn('name="password"', response.text)

    async def test_set_password_rules(self) -> None:
        """
        A password equal to the username is refused with the directory's
        text.
        """
        response = await self.post(
            f"/admin/users/{self.alice.id} /admin/users/{self.alice.id}/password",
            {"password": "alice", "confirm_password": "alice"},
        )
        self.assertIn("too short", field_error(response.text, "password") or "")

    async def test_passwords_do_not_match(self) -> None:
        """
        Two different passwords, on the new user form and the password
        form, get the command line's text under the second input.
        """
        response = await self.post(
            "/admin/users/new",
            {
                "username": "carol",
                "email": "carol@example.com",
                "role": "user",
                "password": "carol's password",
                "confirm_password": "carol's passwort",
            },
        )
        self.assertEqual(
            field_error(response.text, "confirm_password"),
            "The passwords do not match.",
        )
        response = await self.post(
            f"/admin/users/{self.alice.id} /admin/users/{self.alice.id}/password",
            {"password": "set by the admin", "confirm_password": "set by the admin!"},
        )
        self.assertEqual(
            field_error(response.text, "confirm_password"),
            "The passwords do not match.",
        )

    async def test_reset_totp(self) -> None:
        """
        Resetting 2FA turns it off.
        """
        await self.server.directory.enable_totp(self.alice.id)
        response = await self.post(
            f"/admin/users/{self.alice.id} /admin/users/{self.alice.id}/totp-reset"
        )
        self.assertIn("Two-factor authentication was reset.", response.text)
        self.assertFalse((await self.user(self.alice)).totp_enabled)

    async def test_groups_of_user(self) -> None:
        """
        The user page lists the user's groups and adds and removes them.
        """
        staff = await self.server.directory.add_group("staff")
        response = await self.post(
            f"/admin/users/{self.alice.id} /admin/users/{self.alice.id}/groups/add",
            {"group": staff.id},
        )
        self.assertIn("The user was added to the group.", response.text)
        self.assertIn(f'href="/admin/groups/{staff.id}"', response.text)
        group = await self.server.directory.get_group(staff.id)
        self.assertEqual(group.members, (self.alice.id,))
        await self.post(
            f"/admin/users/{self.alice.id} /admin/users/{self.alice.id}/groups/remove",
            {"group": staff.id},
        )
        group = await self.server.directory.get_group(staff.id)
        self.assertEqual(group.members, ())

    async def test_sessions_of_user(self) -> None:
        """
        The user page lists the user's app sessions, which the admin can
        revoke.
        """
        app, secret = await self.server.add_client(name="Notes")
        assert secret is not None
        alice = await self.signed_in()
        await in_thread(code_flow, alice, app.client_id, secret)
        response = await in_thread(self.admin.get, f"/admin/users/{self.alice.id}")
        self.assertIn("Notes", response.text)
        # The tables' headings sit one level below the page's Sessions.
        self.assertIn("<h2>Sessions</h2>", response.text)
        self.assertIn("<h3>Apps</h3>", response.text)
        self.assertIn("<h3>Signed-in browsers</h3>", response.text)
        grant = re.findall(r'name="grant" value="([^"]*)"', response.text)[0]
        response = await in_thread(
            self.admin.post, f"/admin/users/{self.alice.id}/revoke", {"grant": grant}
        )
        self.assertIn("The app session was revoked.", response.text)
        self.assertEqual(await self.server.oidc.store.grants_of(self.alice.id), [])

    async def test_delete_user(self) -> None:
        """
        Deleting asks for confirmation, then deletes the user and ends
        their sessions.
        """
        alice = await self.signed_in()
        response = await self.post(f"/admin/users/{self.alice.id}/delete", {})
        self.assertIn("The user was deleted.", response.text)
        self.assertIsNone(await self.server.directory.user_by_username("alice"))
        response = await in_thread(alice.get, "/")
        self.assertIn('name="password"', response.text)

    async def test_delete_last_admin(self) -> None:
        """
        The last admin cannot delete themselves; the error is shown.
        """
        response = await self.post(f"/admin/users/{self.owner.id}/delete", {})
        self.assertEqual(response.status_code, 400)
        self.assertIn("it is the last active admin", response.text)
        self.assertIsNotNone(await self.server.directory.user_by_username("owner"))


class GroupAdminTests(AdminTestCase):
    """
    The group pages.
    """

    async def test_create_rename_delete(self) -> None:
        """
        An admin creates, renames and deletes a group.
        """
        response = await self.post("/admin/groups", {"name": "Staff"})
        self.assertIn("The group was created.", response.text)
        group = await self.server.directory.group_by_name("staff")
        assert group is not None
        response = await self.post(
            f"/admin/groups/{group.id} /admin/groups/{group.id}/rename",
            {"name": "team"},
        )
        self.assertIn("The group was renamed.", response.text)
        self.assertEqual((await self.server.directory.get_group(group.id)).name, "team")
        response = await self.post(
            f"/admin/groups/{group.id} /admin/groups/{group.id}/delete"
        )
        self.assertIn("The group was deleted.", response.text)
        self.assertIsNone(await self.server.directory.group_by_name("team"))

    async def test_invalid_name(self) -> None:
        """
        An invalid group name is reported under its input with the
        directory's text.
        """
        response = await self.post("/admin/groups", {"name": "-bad name"})
        self.assertEqual(response.status_code, 400)
        self.assertIn(
            "The group name &#x27;-bad name&#x27; is invalid",
            field_error(response.text, "name") or "",
        )

    async def test_members(self) -> None:
        """
        Members are added by username and removed; an unknown username is
        reported under its input.
        """
        group = await self.server.directory.add_group("staff")
        path = f"/admin/groups/{group.id}"
        response = await self.post(f"{path} {path}/add", {"username": "Alice"})
        self.assertIn("The member was added.", response.text)
        self.assertEqual(
            (await self.server.directory.get_group(group.id)).members, (self.alice.id,)
        )
        response = await self.post(f"{path} {path}/add", {"username": "nobody"})
        self.assertEqual(
            field_error(response.text, "username"),
            "There is no user named &#x27;nobody&#x27;.",
        )
        response = await self.post(f"{path} {path}/remove", {"user": self.alice.id})
        self.assertIn("The member was removed.", response.text)
        self.assertEqual((await self.server.directory.get_group(group.id)).members, ())

    async def test_external_group(self) -> None:
        """
        An external group is shown read-only and refuses changes.
        """
        group = await self.server.directory.add_group(
            "upstream", source="ldap", external_id="g-1"
        )
        path = f"/admin/groups/{group.id}"
        response = await in_thread(self.admin.get, path)
        self.assertIn("comes from the external directory", response.text)
        self.assertNotIn(f'action="{path}/rename"', response.text)
        response = await in_thread(
            self.admin.post, f"{path}/add", {"username": "alice"}
        )
        self.assertEqual(response.status_code, 400)
        response = await in_thread(self.admin.post, f"{path}/delete", {})
        self.assertEqual(response.status_code, 403)
        self.assertIsNotNone(await self.server.directory.group_by_name("upstream"))


class SettingsAdminTests(AdminTestCase):
    """
    The settings page.
    """

    async def test_save(self) -> None:
        """
        The settings are stored with their types and audited.
        """
        response = await self.post(
            "/admin/settings",
            {
                "name": "  Example   ID ",
                "lock_profile": ["false", "true"],
                "mandatory_2fa": "false",
                "ldap_require_2fa": ["false", "true"],
            },
        )
        self.assertIn("The settings were saved.", response.text)
        settings = await self.server.directory.get_settings()
        self.assertEqual(settings["name"], "Example ID")
        self.assertIs(settings["lock_profile"], True)
        self.assertIs(settings["ldap_require_2fa"], True)
        self.assertIs(settings["mandatory_2fa"], False)
        self.assertIn("Example ID", response.text)
        events = await self.server.directory.events(kind="settings.set")
        self.assertEqual(
            sorted(e.subject or "" for e in events),
            ["ldap_require_2fa", "lock_profile", "name"],
        )

    async def test_empty_name(self) -> None:
        """
        An empty server name is reported under its input with the command
        line's text.
        """
        response = await self.post("/admin/settings", {"name": " "})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            field_error(response.text, "name"),
            "The setting &#x27;name&#x27; must not be empty.",
        )

    async def test_notice_from_link(self) -> None:
        """
        The confirmation shows the count of ended sessions from its link
        only when it is a number, so a crafted link cannot put text there.
        """
        response = await in_thread(self.admin.get, "/admin/settings?done=saved&ended=3")
        self.assertIn("the sessions of 3 users without 2FA ended", response.text)
        response = await in_thread(self.admin.get, "/admin/settings?done=saved&ended=1")
        self.assertIn("the sessions of 1 user without 2FA ended", response.text)
        response = await in_thread(
            self.admin.get,
            "/admin/settings?done=saved&ended=all+your+admins.+Call+555",
        )
        self.assertIn("The settings were saved.", response.text)
        self.assertNotIn("Call 555", response.text)
        self.assertNotIn("Mandatory 2FA is on", response.text)

    async def test_mandatory_2fa_ends_sessions(self) -> None:
        """
        Turning mandatory 2FA on ends at once the browser and app sessions
        of users without 2FA, the admin's own included.
        """
        app, secret = await self.server.add_client()
        assert secret is not None
        alice = await self.signed_in()
        tokens = await in_thread(code_flow, alice, app.client_id, secret)
        response = await self.post(
            "/admin/settings",
            {
                "name": "idserver",
                "mandatory_2fa": ["false", "true"],
            },
        )
        # The admin has no 2FA either, so the next page is the login.
        self.assertIn('name="password"', response.text)
        store = self.server.oidc.store
        self.assertEqual(await store.sessions_of(self.alice.id), [])
        self.assertEqual(await store.grants_of(self.alice.id), [])
        refreshed = await in_thread(
            token_request,
            self.server,
            app.client_id,
            secret,
            grant_type="refresh_token",
            refresh_token=tokens["refresh_token"],
        )
        self.assertEqual(refreshed["error"], "invalid_grant")
        response = await in_thread(alice.login, "alice", PASSWORD)
        self.assertIn("/login/enrol", response.url)


class ClientAdminTests(AdminTestCase):
    """
    The OpenID client pages.
    """

    async def create(self, **fields: Any) -> Any:
        values = {
            "name": "Wiki",
            "redirect_uris": "https://wiki.example/callback\n",
            "post_logout_redirect_uris": "",
            "launch_url": "https://wiki.example/",
            "signing_alg": "EdDSA",
            "public": "false",
        }
        values.update(fields)
        return await self.post("/admin/clients/new", values)

    async def test_create(self) -> None:
        """
        Creating a client shows its id, its secret once, and the endpoint
        URLs.
        """
        staff = await self.server.directory.add_group("staff")
        response = await self.create(allowed_groups=[staff.id])
        client_id = re.findall(r'value="(cid-[0-9a-f]{32})"', response.text)[0]
        secret = re.findall(
            r'id="credentials-client-secret" type="text" value="([^"]*)"',
            response.text,
        )[0]
        client = await self.server.oidc.clients.get_client(client_id)
        assert client is not None
        self.assertEqual(client.secret_hash, hash_client_secret(secret))
        self.assertEqual(client.signing_alg, "EdDSA")
        self.assertEqual(client.allowed_group_ids, (staff.id,))
        self.assertEqual(client.redirect_uris, ("https://wiki.example/callback",))
        self.assertIn(
            f'value="{self.server.issuer}/.well-known/openid-configuration"',
            response.text,
        )
        self.assertIn(f'value="{self.server.issuer}/token"', response.text)
        response = await in_thread(self.admin.get, f"/admin/clients/{client_id}")
        self.assertNotIn(secret, response.text)

    async def test_invalid_redirect_uri(self) -> None:
        """
        An invalid redirect URI is reported under its input with the
        registry's text.
        """
        response = await self.create(redirect_uris="javascript:alert(1)")
        self.assertEqual(response.status_code, 400)
        self.assertIn(
            "uses the scheme &#x27;javascript&#x27;",
            field_error(response.text, "redirect_uris") or "",
        )
        self.assertEqual(await self.server.oidc.clients.list_clients(), [])

    async def test_control_characters_in_urls(self) -> None:
        """
        Redirect URIs and launch URLs with control characters, and launch
        URLs with spaces or longer than a redirect URI may be, are reported
        under their inputs and not stored.
        """
        for name, value in (
            ("redirect_uris", "https://wiki.example/cb\x00"),
            ("redirect_uris", "https://wiki.example/cb\x7f"),
            ("redirect_uris", "com.example.app:/cb\x9b"),
            ("launch_url", "https://wiki.example/\x00"),
            ("launch_url", "https://wiki.example/a b"),
            ("launch_url", "https://wiki.example/" + "a" * 2000),
        ):
            response = await self.create(**{name: value})
            self.assertEqual(response.status_code, 400, repr(value[:40]))
            self.assertIn("control characters", field_error(response.text, name) or "")
        self.assertEqual(await self.server.oidc.clients.list_clients(), [])

    async def test_edit_regenerate_delete(self) -> None:
        """
        An admin edits a client, regenerates its secret and deletes it.
        """
        client, old_secret = await self.server.add_client(name="Notes")
        path = f"/admin/clients/{client.client_id}"
        response = await self.post(
            path,
            {
                "name": "Notes 2",
                "redirect_uris": "https://notes.example/cb\nhttp://127.0.0.1/cb",
                "post_logout_redirect_uris": "",
                "launch_url": "",
                "signing_alg": "RS256",
                "public": "false",
            },
        )
        self.assertIn("The client was saved.", response.text)
        updated = await self.server.oidc.clients.get_client(client.client_id)
        assert updated is not None
        self.assertEqual(updated.name, "Notes 2")
        self.assertEqual(
            updated.redirect_uris, ("https://notes.example/cb", "http://127.0.0.1/cb")
        )

        response = await self.post(f"{path} {path}/secret")
        secret = re.findall(
            r'id="credentials-client-secret" type="text" value="([^"]*)"',
            response.text,
        )[0]
        self.assertNotEqual(secret, old_secret)
        updated = await self.server.oidc.clients.get_client(client.client_id)
        assert updated is not None
        self.assertEqual(updated.secret_hash, hash_client_secret(secret))

        # The same event kind and detail as idserver-admin client set.
        events = await self.server.directory.events(kind="client.set")
        self.assertEqual([e.detail for e in events], ["new secret", "Notes 2"])

        response = await self.post(f"{path} {path}/delete")
        self.assertIn("The client was deleted.", response.text)
        self.assertIsNone(await self.server.oidc.clients.get_client(client.client_id))


class AuditAdminTests(AdminTestCase):
    """
    The audit log page.
    """

    async def test_filters(self) -> None:
        """
        The log shows logins and admin changes with user, address and time,
        filtered by user and by type.
        """
        await in_thread(WebClient(self.server).login, "alice", "wrong password")
        await self.post("/admin/groups", {"name": "staff"})
        response = await in_thread(self.admin.get, "/admin/audit")
        self.assertIn("login.failed", response.text)
        self.assertIn("group.add", response.text)
        self.assertIn("127.0.0.1", response.text)
        self.assertIn("<time", response.text)

        response = await in_thread(self.admin.get, "/admin/audit?type=login.failed")
        self.assertIn("login.failed", response.text)
        self.assertNotIn("<code>group.add</code>", response.text)

        response = await in_thread(self.admin.get, "/admin/audit?user=alice")
        self.assertIn("login.failed", response.text)
        self.assertNotIn("<code>group.add</code>", response.text)

    async def test_user_event_types(self) -> None:
        """
        The type filter offers the profile changes and the signed-out
        browsers of users, and finds them.
        """
        alice = await self.signed_in("alice")
        await self.signed_in("alice")
        await in_thread(alice.get, "/account/profile")
        await in_thread(
            alice.post,
            "/account/profile",
            {"display_name": "Alice", "email": "alice@example.com"},
        )
        await in_thread(alice.get, "/account/sessions")
        sid = re.findall(r'name="sid" value="([^"]*)"', alice.page)[0]
        await in_thread(alice.post, "/account/sessions/signout", {"sid": sid})

        for kind, label in (
            ("profile.update", "Profile changes by users"),
            ("session.end", "Signed-out browsers"),
        ):
            prefix = kind.split(".")[0]
            response = await in_thread(self.admin.get, f"/admin/audit?type={prefix}")
            self.assertIn(f'<option value="{prefix}" selected>{label}', response.text)
            self.assertEqual(
                re.findall(r"<code>([a-z_.]+)</code>", response.text), [kind]
            )

    async def test_page_out_of_range(self) -> None:
        """
        A page number past any offset the database takes shows an empty
        page instead of failing.
        """
        for page in ("99999999999999999999999", "-3", "x", "9" * 5000):
            response = await in_thread(self.admin.get, f"/admin/audit?page={page}")
            self.assertEqual(response.status_code, 200, page[:30])


class LDAPAdminTests(AdminTestCase):
    """
    The LDAP server page.
    """

    async def test_enable_with_allowlist(self) -> None:
        """
        Enabling the server stores the switch and the allowlist lines, which
        the LDAP server's policy reads back.
        """
        response = await self.post(
            "/admin/ldap",
            {
                "enabled": ["false", "true"],
                "allowlist": "127.0.0.1  # this host\n\n10.0.0.0/8\n::ffff:192.0.2.1",
            },
        )
        self.assertIn("an admin secret was generated", response.text)
        self.assertIn('id="ldap-status">Enabled', response.text)
        secret = re.findall(
            r'id="ldap-secret-admin-secret" type="text" value="([^"]*)"',
            response.text,
        )[0]
        settings = await self.server.directory.get_settings()
        policy = AccessPolicy.from_settings(settings)
        self.assertTrue(policy.enabled)
        self.assertEqual(
            policy.allowlist_lines,
            ("127.0.0.1  # this host", "10.0.0.0/8", "::ffff:192.0.2.1"),
        )
        self.assertTrue(policy.allows("10.1.2.3"))
        self.assertTrue(policy.allows("192.0.2.1"))
        self.assertFalse(policy.allows("192.0.2.2"))
        assert policy.secret_hash is not None
        self.assertTrue(check_generated_secret(policy.secret_hash, secret))
        events = await self.server.directory.events(kind="ldap_server")
        self.assertEqual(
            sorted(e.kind for e in events),
            ["ldap_server.allowlist", "ldap_server.enable", "ldap_server.secret"],
        )

    async def test_enable_keeps_secret(self) -> None:
        """
        Enabling the server when a secret is set keeps that secret.
        """
        await self.post(
            "/admin/ldap /admin/ldap/secret",
            {"secret": "a long ldap secret", "confirm_secret": "a long ldap secret"},
        )
        response = await self.post(
            "/admin/ldap", {"enabled": ["false", "true"], "allowlist": ""}
        )
        self.assertIn("The LDAP server settings were saved.", response.text)
        self.assertIn("A secret chosen by an administrator is set.", response.text)

    async def test_invalid_allowlist(self) -> None:
        """
        A line that is not an address or range is reported under the
        allowlist, and nothing is stored.
        """
        response = await self.post(
            "/admin/ldap",
            {"enabled": ["false", "true"], "allowlist": "10.0.0.0/8\nnot-an-address"},
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn(
            "Invalid allowlist entry &#x27;not-an-address&#x27;",
            field_error(response.text, "allowlist") or "",
        )
        self.assertIn("not-an-address", response.text)
        settings = await self.server.directory.get_settings()
        self.assertFalse(AccessPolicy.from_settings(settings).enabled)

    async def test_generate_secret(self) -> None:
        """
        A generated secret is shown once and stored as its SHA-256.
        """
        response = await self.post("/admin/ldap /admin/ldap/secret/generate")
        secret = re.findall(
            r'id="ldap-secret-admin-secret" type="text" value="([^"]*)"',
            response.text,
        )[0]
        settings = await self.server.directory.get_settings()
        stored = AccessPolicy.from_settings(settings).secret_hash
        assert stored is not None
        self.assertTrue(check_generated_secret(stored, secret))
        response = await in_thread(self.admin.get, "/admin/ldap")
        self.assertNotIn(secret, response.text)
        self.assertIn("A generated secret is set.", response.text)

    async def test_choose_secret(self) -> None:
        """
        A chosen secret is hashed with argon2id; a short one is refused.
        """
        response = await self.post(
            "/admin/ldap /admin/ldap/secret",
            {"secret": "short", "confirm_secret": "short"},
        )
        self.assertEqual(
            field_error(response.text, "secret"),
            "The secret is too short: at least 8 characters.",
        )
        response = await self.post(
            "/admin/ldap /admin/ldap/secret",
            {"secret": "a long ldap secret", "confirm_secret": "a long ldap secreT"},
        )
        self.assertEqual(
            field_error(response.text, "confirm_secret"), "The secrets do not match."
        )
        response = await self.post(
            "/admin/ldap /admin/ldap/secret",
            {"secret": "a long ldap secret", "confirm_secret": "a long ldap secret"},
        )
        self.assertIn("The admin secret was set.", response.text)
        settings = await self.server.directory.get_settings()
        stored = AccessPolicy.from_settings(settings).secret_hash
        assert stored is not None
        matches, _ = await self.server.directory.hasher.verify(
            stored, "a long ldap secret"
        )
        self.assertTrue(matches)

    async def test_client_settings(self) -> None:
        """
        The page shows the URLs of the listeners and the DNs and filters a
        client application needs.
        """
        response = await in_thread(self.admin.get, "/admin/ldap")
        for value in (
            "ldaps://id.example.com:636",
            "ldap://127.0.0.1:389",
            "cn=admin,ou=system,dc=cloudron",
            "ou=users,dc=cloudron",
            "ou=groups,dc=cloudron",
            "(objectClass=user)",
            "(objectClass=group)",
        ):
            self.assertIn(f'value="{value}"', response.text)
