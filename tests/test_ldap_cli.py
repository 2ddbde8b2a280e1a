"""
Tests for C{idserver-admin ldap-server} and for the LDAP set-up of the
development instance.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

from idserver import devinstance
from idserver.ldap.access import (
    ALLOWLIST_KEY,
    ENABLED_KEY,
    SECRET_HASH_KEY,
    check_generated_secret,
)
from tests.test_cli import CLITestCase

SHOW_FIELDS = ["enabled", "allowlist", "bind_dn", "users_dn", "groups_dn"]


class LDAPServerCommandTests(CLITestCase):
    """
    Tests for C{idserver-admin ldap-server}.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        super().setUp()
        await self.init()

    async def settings(self) -> dict[str, object]:
        from idserver.directory.sqlite import open_directory
        from idserver.passwords import Argon2Hasher

        from .ldaphelpers import CHEAP_ARGON2, get_reactor_for_tests

        reactor = get_reactor_for_tests()
        hasher = Argon2Hasher(reactor, **CHEAP_ARGON2)
        hasher.start()
        directory = open_directory(
            self.data_dir.child("idserver.sqlite3").path, reactor=reactor, hasher=hasher
        )
        try:
            settings: dict[str, object] = await directory.get_settings()
            self.events = await directory.events(kind="ldap_server")
            if isinstance(settings.get(SECRET_HASH_KEY), str) and str(
                settings[SECRET_HASH_KEY]
            ).startswith("$argon2"):
                self.chosen_matches = (
                    await hasher.verify(
                        str(settings[SECRET_HASH_KEY]), "a chosen secret"
                    )
                )[0]
            return settings
        finally:
            directory.close()
            hasher.stop()

    async def test_show_defaults(self) -> None:
        """
        Before anything is set, the server is off with an empty allowlist;
        the DNs follow the configured suffix.
        """
        result = await self.ok("ldap-server", "show", "--json")
        self.assertEqual(
            result.json(),
            {
                "enabled": False,
                "allowlist": [],
                "bind_dn": "cn=admin,ou=system,dc=cloudron",
                "users_dn": "ou=users,dc=cloudron",
                "groups_dn": "ou=groups,dc=cloudron",
            },
        )
        text = await self.ok("ldap-server", "show")
        self.assertIn("enabled:   false", text.stdout)

    async def test_enable(self) -> None:
        """
        Enabling stores the allowlist and, without a stored secret,
        generates one and prints it once.
        """
        result = await self.ok(
            "ldap-server",
            "enable",
            "--allow",
            "127.0.0.1",
            "--allow",
            "10.0.0.0/8",
            "--json",
        )
        output = result.json()
        self.assertEqual(list(output), [*SHOW_FIELDS, "secret"])
        self.assertEqual(output["allowlist"], ["127.0.0.1", "10.0.0.0/8"])
        self.assertTrue(output["enabled"])
        settings = await self.settings()
        self.assertEqual(settings[ENABLED_KEY], True)
        self.assertEqual(settings[ALLOWLIST_KEY], ["127.0.0.1", "10.0.0.0/8"])
        stored = str(settings[SECRET_HASH_KEY])
        self.assertTrue(check_generated_secret(stored, output["secret"]))
        self.assertNotIn(output["secret"], json.dumps([e.detail for e in self.events]))

        again = await self.ok("ldap-server", "enable", "--json")
        self.assertNotIn("secret", again.json())
        self.assertEqual(again.json()["allowlist"], ["127.0.0.1", "10.0.0.0/8"])

        renewed = await self.ok("ldap-server", "enable", "--generate-secret", "--json")
        settings = await self.settings()
        self.assertTrue(
            check_generated_secret(
                str(settings[SECRET_HASH_KEY]), renewed.json()["secret"]
            )
        )
        self.assertFalse(
            check_generated_secret(str(settings[SECRET_HASH_KEY]), output["secret"])
        )

    async def test_enable_text(self) -> None:
        """
        The text output shows the secret once and warns about an empty
        allowlist.
        """
        result = await self.ok("ldap-server", "enable")
        self.assertIn("secret:", result.stdout)
        self.assertIn("shown only this once", result.stdout)
        self.assertIn("allowlist is empty", result.stdout)

    async def test_secret_stdin(self) -> None:
        """
        A chosen secret is read from standard input and stored as argon2id;
        a short or missing one is refused.
        """
        result = await self.ok(
            "ldap-server",
            "enable",
            "--secret-stdin",
            "--json",
            stdin="a chosen secret\n",
        )
        self.assertNotIn("secret", result.json())
        await self.settings()
        self.assertTrue(self.chosen_matches)
        short = await self.fails(
            1, "ldap-server", "enable", "--secret-stdin", stdin="short\n"
        )
        self.assertIn(
            "error: The secret is too short: at least 8 characters.", short.stderr
        )
        long = await self.fails(
            1, "ldap-server", "enable", "--secret-stdin", stdin="x" * 1025 + "\n"
        )
        self.assertIn(
            "error: The secret is too long: at most 1024 characters.", long.stderr
        )
        await self.fails(1, "ldap-server", "enable", "--secret-stdin", stdin="")

    async def test_usage_errors(self) -> None:
        """
        An invalid allowlist entry, or both secret options, are usage errors.
        """
        result = await self.fails(2, "ldap-server", "enable", "--allow", "localhost")
        self.assertIn(
            "error: Invalid allowlist entry 'localhost': expected an IPv4 or IPv6"
            " address or a CIDR range such as 10.0.0.0/8 or fd00::/8.",
            result.stderr,
        )
        await self.fails(
            2, "ldap-server", "enable", "--secret-stdin", "--generate-secret"
        )

    async def test_disable(self) -> None:
        """
        Disabling keeps the allowlist and the secret.
        """
        await self.ok("ldap-server", "enable", "--allow", "::1")
        await self.ok("ldap-server", "disable")
        shown = (await self.ok("ldap-server", "show", "--json")).json()
        self.assertEqual((shown["enabled"], shown["allowlist"]), (False, ["::1"]))
        settings = await self.settings()
        self.assertTrue(settings[SECRET_HASH_KEY])
        self.assertEqual(
            [e.kind for e in self.events],
            ["ldap_server.disable", "ldap_server.enable"],
        )


class DevelopmentInstanceTests(TestCase):
    """
    Tests for the LDAP part of L{idserver.devinstance}.
    """

    def test_ldap_enabled_once(self) -> None:
        """
        The first set-up enables the LDAP server for loopback clients and
        prints the admin secret; later ones print no secret.
        """
        directory = Path(self.mktemp())
        out = io.StringIO()
        devinstance.set_up(directory, out)
        self.assertIn("Bind DN: cn=admin,ou=system,dc=cloudron", out.getvalue())
        self.assertIn("Secret:", out.getvalue())

        script = Path(sys.executable).parent / "idserver-admin"
        shown = subprocess.run(
            [
                str(script),
                "--config",
                str(directory / "idserver.toml"),
                "ldap-server",
                "show",
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(shown.stdout)
        self.assertEqual(
            (result["enabled"], result["allowlist"]), (True, ["127.0.0.1", "::1"])
        )

        again = io.StringIO()
        devinstance.set_up(directory, again)
        self.assertNotIn("Secret:", again.getvalue())
