"""
Tests for L{idserver.ldap.settings}, the functions that both
C{idserver-admin ldap-server} and the dashboard store the LDAP server's
settings with, over a real SQLite directory.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from idserver.errors import ValidationError
from idserver.ldap import settings as ldap_settings
from idserver.ldap.access import (
    ALLOWLIST_KEY,
    ENABLED_KEY,
    SECRET_HASH_KEY,
    AccessPolicy,
    check_generated_secret,
)

from .ldaphelpers import get_reactor_for_tests, open_test_directory


class CheckTests(TestCase):
    """
    Tests for L{ldap_settings.check_allowlist} and
    L{ldap_settings.check_secret}.
    """

    def test_allowlist_lines(self) -> None:
        """
        Entries are stripped, blank ones dropped, comments kept.
        """
        self.assertEqual(
            ldap_settings.check_allowlist(
                ["  127.0.0.1 ", "", "   ", "10.0.0.0/8  # office", "# note"]
            ),
            ["127.0.0.1", "10.0.0.0/8  # office", "# note"],
        )

    def test_invalid_allowlist(self) -> None:
        """
        An invalid entry is a validation error of the field C{allowlist},
        as one sentence naming the entry.
        """
        error = self.assertRaises(
            ValidationError, ldap_settings.check_allowlist, ["::1", "localhost"]
        )
        self.assertEqual(error.field, "allowlist")
        self.assertEqual(
            str(error),
            "Invalid allowlist entry 'localhost': expected an IPv4 or IPv6"
            " address or a CIDR range such as 10.0.0.0/8 or fd00::/8.",
        )

    def test_secret_rules(self) -> None:
        """
        A chosen secret needs 8 to 1024 characters that encode as UTF-8.
        """
        ldap_settings.check_secret("8 chars!")
        ldap_settings.check_secret("x" * 1024)
        cases = [
            ("short", "The secret is too short: at least 8 characters."),
            ("x" * 1025, "The secret is too long: at most 1024 characters."),
            ("surrogate \udc80", "The secret cannot be encoded as UTF-8."),
        ]
        for secret, message in cases:
            error = self.assertRaises(
                ValidationError, ldap_settings.check_secret, secret
            )
            self.assertEqual((error.field, str(error)), ("secret", message))


class StoreTests(TestCase):
    """
    Tests for the functions that store the LDAP server settings.
    """

    def setUp(self) -> None:
        self.store = open_test_directory(get_reactor_for_tests(), self.mktemp())
        self.addCleanup(self.store.close)
        self.directory = self.store.directory

    async def policy(self) -> AccessPolicy:
        return AccessPolicy.from_settings(await self.directory.get_settings())

    async def test_enable_generates_first_secret(self) -> None:
        """
        The first C{enable} stores the allowlist, generates a secret and
        turns the server on; a second keeps the allowlist and the secret.
        """
        generated = await ldap_settings.enable(
            self.directory, allowlist=["127.0.0.1", "::1 # loopback"]
        )
        assert generated is not None
        policy = await self.policy()
        self.assertTrue(policy.enabled)
        self.assertEqual(policy.allowlist_lines, ("127.0.0.1", "::1 # loopback"))
        assert policy.secret_hash is not None
        self.assertTrue(check_generated_secret(policy.secret_hash, generated))

        self.assertIsNone(await ldap_settings.enable(self.directory))
        self.assertEqual(await self.policy(), policy)

    async def test_enable_new_secret(self) -> None:
        """
        C{new_secret} replaces a stored secret with a generated one.
        """
        first = await ldap_settings.enable(self.directory)
        second = await ldap_settings.enable(self.directory, new_secret=True)
        assert first is not None and second is not None
        stored = (await self.policy()).secret_hash
        assert stored is not None
        self.assertTrue(check_generated_secret(stored, second))
        self.assertFalse(check_generated_secret(stored, first))

    async def test_enable_chosen_secret(self) -> None:
        """
        A chosen secret is stored as an argon2id hash and nothing is
        generated.
        """
        generated = await ldap_settings.enable(self.directory, secret="a chosen secret")
        self.assertIsNone(generated)
        stored = (await self.policy()).secret_hash
        assert stored is not None
        self.assertTrue(stored.startswith("$argon2id$"))
        matches, _ = await self.directory.hasher.verify(stored, "a chosen secret")
        self.assertTrue(matches)
        state = ldap_settings.ldap_state(await self.directory.get_settings())
        self.assertEqual(state.secret, "chosen")

    async def test_enable_invalid_stores_nothing(self) -> None:
        """
        An invalid allowlist entry or chosen secret fails before anything is
        stored, so the server stays off without a secret.
        """
        before = await self.directory.get_settings()
        with self.assertRaises(ValidationError):
            await ldap_settings.enable(self.directory, allowlist=["not-an-address"])
        with self.assertRaises(ValidationError):
            await ldap_settings.enable(
                self.directory, allowlist=["127.0.0.1"], secret="short"
            )
        after = await self.directory.get_settings()
        for key in (ENABLED_KEY, ALLOWLIST_KEY, SECRET_HASH_KEY):
            self.assertEqual(after.get(key), before.get(key), key)

    async def test_disable_keeps_settings(self) -> None:
        """
        C{disable} turns the server off and keeps the allowlist and secret.
        """
        await ldap_settings.enable(self.directory, allowlist=["10.0.0.0/8"])
        enabled = await self.policy()
        await ldap_settings.disable(self.directory)
        disabled = await self.policy()
        self.assertFalse(disabled.enabled)
        self.assertEqual(disabled.allowlist_lines, enabled.allowlist_lines)
        self.assertEqual(disabled.secret_hash, enabled.secret_hash)

    async def test_set_allowlist_and_secret(self) -> None:
        """
        C{set_allowlist} and C{set_secret} change one setting each and
        leave the switch alone.
        """
        lines = await ldap_settings.set_allowlist(self.directory, [" 192.0.2.1 "])
        self.assertEqual(lines, ["192.0.2.1"])
        generated = await ldap_settings.set_secret(self.directory)
        policy = await self.policy()
        self.assertFalse(policy.enabled)
        self.assertEqual(policy.allowlist_lines, ("192.0.2.1",))
        assert generated is not None and policy.secret_hash is not None
        self.assertTrue(check_generated_secret(policy.secret_hash, generated))
        with self.assertRaises(ValidationError):
            await ldap_settings.set_secret(self.directory, "short")
