"""
Tests for L{idserver.ldap.access}: the allowlist, the settings of the LDAP
server and the admin secret.
"""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from idserver.ldap.access import (
    ALLOWLIST_KEY,
    ENABLED_KEY,
    SECRET_HASH_KEY,
    AccessPolicy,
    InvalidAllowlist,
    check_generated_secret,
    generate_secret,
    hash_generated_secret,
    is_generated_hash,
    parse_allowlist,
)


class AllowlistTests(SynchronousTestCase):
    """
    Tests for L{parse_allowlist}.
    """

    def test_entries(self) -> None:
        """
        Addresses, ranges, comments and blank lines parse; host bits of a
        range are ignored.
        """
        self.assertEqual(
            parse_allowlist(
                ["127.0.0.1", "", "# office", "10.0.0.1/8  # VPN", "fd00::/8"]
            ),
            (
                ipaddress.ip_network("127.0.0.1/32"),
                ipaddress.ip_network("10.0.0.0/8"),
                ipaddress.ip_network("fd00::/8"),
            ),
        )

    def test_mapped_entries(self) -> None:
        """
        IPv4-mapped IPv6 entries become IPv4 entries.
        """
        self.assertEqual(
            parse_allowlist(["::ffff:192.0.2.0/120", "::ffff:192.0.2.7"]),
            (
                ipaddress.ip_network("192.0.2.0/24"),
                ipaddress.ip_network("192.0.2.7/32"),
            ),
        )

    def test_invalid(self) -> None:
        """
        Anything else is rejected with the entry in the message.
        """
        for entry in ["localhost", "10.0.0.0/33", "1.2.3", "::g"]:
            with self.subTest(entry=entry):
                error = self.assertRaises(InvalidAllowlist, parse_allowlist, [entry])
                self.assertIn(entry, str(error))


class PolicyTests(SynchronousTestCase):
    """
    Tests for L{AccessPolicy}.
    """

    def policy(self, *lines: str, enabled: bool = True) -> AccessPolicy:
        return AccessPolicy.from_settings(
            {ENABLED_KEY: enabled, ALLOWLIST_KEY: list(lines)}
        )

    def test_allows(self) -> None:
        """
        Addresses in a listed network are allowed, others are not.
        """
        policy = self.policy("10.0.0.0/8", "2001:db8::/32", "127.0.0.1")
        for address, allowed in [
            ("10.1.2.3", True),
            ("11.0.0.1", False),
            ("127.0.0.1", True),
            ("127.0.0.2", False),
            ("2001:db8::5", True),
            ("2001:db9::5", False),
            ("::ffff:10.9.9.9", True),
            ("::ffff:11.9.9.9", False),
            ("fe80::1%eth0", False),
            ("not an address", False),
        ]:
            with self.subTest(address=address):
                self.assertEqual(policy.allows(address), allowed)

    def test_disabled(self) -> None:
        """
        While disabled, no address is allowed.
        """
        self.assertFalse(self.policy("0.0.0.0/0", enabled=False).allows("10.0.0.1"))

    def test_defaults(self) -> None:
        """
        Without settings the server is off, with an empty allowlist and no
        secret.
        """
        policy = AccessPolicy.from_settings({})
        self.assertEqual(
            (policy.enabled, policy.allowlist, policy.secret_hash, policy.require_2fa),
            (False, (), None, False),
        )

    def test_bad_stored_line(self) -> None:
        """
        A stored line that does not parse allows nothing, and the others
        still apply.
        """
        policy = self.policy("garbage", "10.0.0.0/8")
        self.assertTrue(policy.allows("10.0.0.1"))
        self.assertEqual(policy.allowlist_lines, ("garbage", "10.0.0.0/8"))

    def test_require_2fa(self) -> None:
        """
        C{ldap_require_2fa} is read from the general settings.
        """
        self.assertTrue(
            AccessPolicy.from_settings({"ldap_require_2fa": True}).require_2fa
        )


class SecretTests(SynchronousTestCase):
    """
    Tests for generated admin secrets.
    """

    def test_generated(self) -> None:
        """
        A generated secret is long and random, and its stored form checks
        it and only it.
        """
        secret = generate_secret()
        self.assertGreaterEqual(len(secret), 32)
        self.assertNotEqual(secret, generate_secret())
        stored = hash_generated_secret(secret)
        self.assertTrue(is_generated_hash(stored))
        self.assertNotIn(secret, stored)
        self.assertTrue(check_generated_secret(stored, secret))
        self.assertFalse(check_generated_secret(stored, secret + "x"))

    def test_argon2_form(self) -> None:
        """
        An argon2id hash is not a generated hash.
        """
        self.assertFalse(is_generated_hash("$argon2id$v=19$m=8,t=1,p=1$abc$def"))
        policy = AccessPolicy.from_settings({SECRET_HASH_KEY: "$argon2id$x"})
        self.assertEqual(policy.secret_hash, "$argon2id$x")
