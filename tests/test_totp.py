"""
Tests for L{idserver.totp}.
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from idserver.totp import match_step, new_secret, provisioning_uri, time_step

# A time in the middle of a 30-second step, so that "now - 30" and
# "now + 30" fall in the neighbouring steps.
NOW = 1_700_000_015.0
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def code_at(secret: str, when: float) -> str:
    return pyotp.TOTP(secret).at(when)


class NewSecretTests(SynchronousTestCase):
    """
    Tests for L{new_secret}.
    """

    def test_length(self) -> None:
        """
        A secret is 32 base32 characters that decode to 160 bits.
        """
        secret = new_secret()
        self.assertEqual(len(secret), 32)
        self.assertEqual(len(base64.b32decode(secret)), 20)

    def test_random(self) -> None:
        """
        Two secrets differ.
        """
        self.assertNotEqual(new_secret(), new_secret())


class ProvisioningURITests(SynchronousTestCase):
    """
    Tests for L{provisioning_uri}.
    """

    def test_format(self) -> None:
        """
        The URI is otpauth://totp/ with an issuer:username label and the
        secret, issuer and RFC 6238 defaults as parameters.
        """
        uri = provisioning_uri(SECRET, "alice", "Example Org")
        parts = urlsplit(uri)
        self.assertEqual(parts.scheme, "otpauth")
        self.assertEqual(parts.netloc, "totp")
        self.assertEqual(parts.path, "/Example%20Org:alice")
        query = parse_qs(parts.query)
        self.assertEqual(query["secret"], [SECRET])
        self.assertEqual(query["issuer"], ["Example Org"])
        self.assertEqual(query["algorithm"], ["SHA1"])
        self.assertEqual(query["digits"], ["6"])
        self.assertEqual(query["period"], ["30"])
        self.assertNotIn("+", uri)

    def test_colon_in_issuer(self) -> None:
        """
        A colon in the issuer, which would split the label, becomes a space.
        """
        uri = provisioning_uri(SECRET, "alice", "Acme: Staff")
        label = unquote(urlsplit(uri).path[1:])
        self.assertEqual(label, "Acme Staff:alice")

    def test_pyotp_parses(self) -> None:
        """
        pyotp reads the URI back with the same secret, account and issuer.
        """
        parsed = pyotp.parse_uri(provisioning_uri(SECRET, "bob", "idserver"))
        assert isinstance(parsed, pyotp.TOTP)
        self.assertEqual(parsed.secret, SECRET)
        self.assertEqual(parsed.name, "bob")
        self.assertEqual(parsed.issuer, "idserver")
        self.assertEqual(parsed.at(NOW), code_at(SECRET, NOW))


class MatchStepTests(SynchronousTestCase):
    """
    Tests for L{match_step}.
    """

    def test_current_step(self) -> None:
        """
        The code of the current step matches and returns that step.
        """
        self.assertEqual(
            match_step(SECRET, code_at(SECRET, NOW), NOW, None), time_step(NOW)
        )

    def test_previous_and_next_step(self) -> None:
        """
        Codes one step before and after the current one match.
        """
        step = time_step(NOW)
        self.assertEqual(
            match_step(SECRET, code_at(SECRET, NOW - 30), NOW, None), step - 1
        )
        self.assertEqual(
            match_step(SECRET, code_at(SECRET, NOW + 30), NOW, None), step + 1
        )

    def test_two_steps_away(self) -> None:
        """
        Codes two steps away from the current one do not match.
        """
        self.assertIsNone(match_step(SECRET, code_at(SECRET, NOW - 60), NOW, None))
        self.assertIsNone(match_step(SECRET, code_at(SECRET, NOW + 60), NOW, None))

    def test_used_step(self) -> None:
        """
        A code whose step is not newer than the last accepted step is
        rejected.
        """
        step = time_step(NOW)
        code = code_at(SECRET, NOW)
        self.assertIsNone(match_step(SECRET, code, NOW, step))
        self.assertIsNone(match_step(SECRET, code, NOW, step + 1))
        self.assertEqual(match_step(SECRET, code, NOW, step - 1), step)

    def test_previous_step_after_newer_accepted(self) -> None:
        """
        After the current step was accepted, the previous step's code fails.
        """
        step = time_step(NOW)
        self.assertIsNone(match_step(SECRET, code_at(SECRET, NOW - 30), NOW, step))

    def test_surrounding_space(self) -> None:
        """
        Surrounding white space is ignored.
        """
        code = code_at(SECRET, NOW)
        self.assertEqual(match_step(SECRET, f" {code}\n", NOW, None), time_step(NOW))

    def test_bad_input(self) -> None:
        """
        Input that is not exactly six ASCII digits never matches.
        """
        code = code_at(SECRET, NOW)
        arabic = "".join(chr(0x0660 + int(c)) for c in code)
        for bad in ["", code[:5], code + "0", "12345a", "abcdef", arabic, "1 2345"]:
            self.assertIsNone(match_step(SECRET, bad, NOW, None), bad)

    def test_wrong_secret(self) -> None:
        """
        A code of another secret does not match.
        """
        other = new_secret()
        self.assertIsNone(match_step(SECRET, code_at(other, NOW), NOW, None))

    def test_invalid_secret(self) -> None:
        """
        A secret that is not base32 raises L{ValueError}.
        """
        self.assertRaises(ValueError, match_step, "not base32!", "123456", NOW, None)

    @given(st.text(max_size=12))
    def test_arbitrary_text(self, text: str) -> None:
        """
        Arbitrary text either does not match or is the code of a step
        within one step of now.
        """
        step = match_step(SECRET, text, NOW, None)
        if step is not None:
            self.assertIn(step - time_step(NOW), (-1, 0, 1))
            self.assertEqual(code_at(SECRET, step * 30), text.strip())
