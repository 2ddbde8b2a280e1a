"""
Tests for C{idserver-admin client ...}, C{keys ...}, the signing keys of
C{init}, and the session sweep of C{settings set mandatory_2fa true}.
"""

from __future__ import annotations

import os
import stat

from idserver.oidc.clients import SQLiteClientRegistry, check_client_secret
from idserver.sessions.sqlite import SQLiteSessionStore
from idserver.sessions.testing import make_session
from tests.test_cli import CLITestCase


class ClientCommandTests(CLITestCase):
    """
    The client commands.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        super().setUp()
        await self.init()

    async def test_add_confidential(self) -> None:
        """
        client add prints a cid- id and a secret that the stored hash
        matches.
        """
        await self.ok("group", "add", "staff")
        await self.ok("group", "add", "admins-x")
        result = await self.ok(
            "client", "add", "--name", "Grafana",
            "--redirect-uri", "https://grafana.example/login/generic_oauth",
            "--redirect-uri", "http://127.0.0.1/cb",
            "--post-logout-redirect-uri", "https://grafana.example/",
            "--allowed-group", "staff", "admins-x", "--json",
        )  # fmt: skip
        record = result.json()
        self.assertRegex(record["client_id"], r"^cid-[0-9a-f]{32}$")
        self.assertEqual(record["name"], "Grafana")
        self.assertEqual(len(record["redirect_uris"]), 2)
        self.assertEqual(
            record["post_logout_redirect_uris"], ["https://grafana.example/"]
        )
        self.assertEqual(record["signing_alg"], "RS256")
        self.assertFalse(record["public"])
        self.assertEqual(record["allowed_groups"], ["admins-x", "staff"])
        self.assertIsNone(record["launch_url"])

        async with self.directory() as directory:
            client = await SQLiteClientRegistry(directory.database).get_client(
                record["client_id"]
            )
        assert client is not None
        self.assertTrue(check_client_secret(client, record["client_secret"]))
        self.assertNotEqual(client.secret_hash, record["client_secret"])

        shown = (await self.ok("client", "show", record["client_id"], "--json")).json()
        self.assertNotIn("client_secret", shown)
        listed = (await self.ok("client", "list", "--json")).json()
        self.assertEqual([c["client_id"] for c in listed], [record["client_id"]])

    async def test_add_public_eddsa(self) -> None:
        """
        A public client has no secret; the text output names the id.
        """
        result = await self.ok(
            "client", "add", "--name", "CLI tool", "--public",
            "--signing-alg", "EdDSA", "--redirect-uri", "http://127.0.0.1/cb",
        )  # fmt: skip
        self.assertIn("client_id:", result.stdout)
        self.assertNotIn("client_secret", result.stdout)
        self.assertIn("EdDSA", result.stdout)

    async def test_invalid(self) -> None:
        """
        Invalid URIs, algorithms and unknown groups fail with one error line.
        """
        await self.fails(
            1, "client", "add", "--name", "x", "--redirect-uri", "javascript:alert(1)"
        )
        await self.fails(
            1, "client", "add", "--name", "x", "--redirect-uri", "https://a.example/",
            "--allowed-group", "nobody",
        )  # fmt: skip
        await self.fails(
            2, "client", "add", "--name", "x", "--redirect-uri", "https://a.example/",
            "--signing-alg", "HS256",
        )  # fmt: skip
        await self.fails(1, "client", "show", "cid-" + "0" * 32)
        listed = (await self.ok("client", "list", "--json")).json()
        self.assertEqual(listed, [])

    async def test_set_and_delete(self) -> None:
        """
        client set changes fields and replaces lists; --new-secret prints a
        new secret; client delete removes the client.
        """
        await self.ok("group", "add", "staff")
        record = (
            await self.ok(
                "client", "add", "--name", "A", "--redirect-uri",
                "https://a.example/cb", "--allowed-group", "staff", "--json",
            )
        ).json()  # fmt: skip
        client_id = record["client_id"]
        changed = (
            await self.ok(
                "client", "set", client_id, "--name", "B",
                "--redirect-uri", "https://b.example/cb",
                "--launch-url", "https://b.example/", "--no-allowed-groups",
                "--signing-alg", "EdDSA", "--json",
            )
        ).json()  # fmt: skip
        self.assertEqual(changed["name"], "B")
        self.assertEqual(changed["redirect_uris"], ["https://b.example/cb"])
        self.assertEqual(changed["launch_url"], "https://b.example/")
        self.assertEqual(changed["allowed_groups"], [])
        self.assertEqual(changed["signing_alg"], "EdDSA")
        self.assertNotIn("client_secret", changed)

        rotated = (
            await self.ok("client", "set", client_id, "--new-secret", "--json")
        ).json()
        self.assertNotEqual(rotated["client_secret"], record["client_secret"])

        public = (
            await self.ok("client", "set", client_id, "--public", "--json")
        ).json()
        self.assertTrue(public["public"])

        result = await self.ok("client", "delete", client_id)
        self.assertIn("Deleted client B", result.stdout)
        await self.fails(1, "client", "delete", client_id)

    async def test_audit(self) -> None:
        """
        Client changes are audit events without the secret.
        """
        record = (
            await self.ok(
                "client", "add", "--name", "A", "--redirect-uri",
                "https://a.example/cb", "--json",
            )
        ).json()  # fmt: skip
        async with self.directory() as directory:
            events = await directory.events(kind="client.")
        self.assertEqual([e.kind for e in events], ["client.add"])
        self.assertNotIn(record["client_secret"], events[0].detail)


class KeyCommandTests(CLITestCase):
    """
    Signing keys from init and keys rotate.
    """

    async def test_init_creates_keys(self) -> None:
        """
        init creates an RSA and an Ed25519 key with mode 0600; a second
        init creates none.
        """
        result = await self.ok("init")
        self.assertEqual(result.stdout.count("Created signing key"), 2)
        keys = self.data_dir.child("keys")
        pems = [p for p in keys.children() if p.basename().endswith(".pem")]
        self.assertEqual(len(pems), 2)
        for pem in pems:
            self.assertEqual(stat.S_IMODE(os.stat(pem.path).st_mode), 0o600)
        again = await self.ok("init")
        self.assertIn("Signing keys in", again.stdout)

    async def test_rotate(self) -> None:
        """
        keys rotate adds two keys and keeps the old ones listed as retired.
        """
        await self.init()
        before = (await self.ok("keys", "list", "--json")).json()
        created = (await self.ok("keys", "rotate", "--json")).json()["created"]
        self.assertEqual(len(created), 2)
        after = (await self.ok("keys", "list", "--json")).json()
        self.assertEqual(len(after), 4)
        retired = {k["kid"] for k in after if k["retired_at"] is not None}
        self.assertEqual(retired, {k["kid"] for k in before})
        self.assertEqual({k["alg"] for k in after if k["kid"] in created},
                         {"RS256", "EdDSA"})  # fmt: skip


class MandatoryTwoFactorCommandTests(CLITestCase):
    """
    settings set mandatory_2fa true ends sessions of users without 2FA.
    """

    async def test_sweep(self) -> None:
        """
        Turning mandatory 2FA on ends the sessions of users without 2FA.
        """
        await self.init()
        await self.add_admin("owner")
        owner = await self.stored_user("owner")
        assert owner is not None
        session = make_session(owner.id)
        async with self.directory() as directory:
            store = SQLiteSessionStore(directory.database, directory)
            await store.add_session(session)
        result = await self.ok("settings", "set", "mandatory_2fa", "true")
        self.assertIn(
            "Ended the sessions of the users without 2FA: owner.", result.stdout
        )
        async with self.directory() as directory:
            store = SQLiteSessionStore(directory.database, directory)
            self.assertIsNone(await store.get_session(session.key))
