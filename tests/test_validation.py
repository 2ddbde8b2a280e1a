"""
Tests for L{idserver.validation}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from idserver.errors import ValidationError
from idserver.validation import normalize_email, parse_setting


class NormalizeEmailTests(SynchronousTestCase):
    """
    Tests for L{normalize_email}.
    """

    def test_lower_case(self) -> None:
        """
        An address is returned in lower case without surrounding space.
        """
        self.assertEqual(normalize_email(" Alice@Example.COM "), "alice@example.com")

    def test_control_characters(self) -> None:
        """
        Control characters in either part are rejected with the field name.
        """
        for address in [
            "a\x1b[31mred@example.com",
            "a\x00b@example.com",
            "del\x7f@example.com",
            "alice@exa\x1bmple.com",
            "alice@example.c\x7fom",
        ]:
            error = self.assertRaises(
                ValidationError, normalize_email, address, "fallback_email"
            )
            self.assertEqual(error.field, "fallback_email", repr(address))

    def test_unicode(self) -> None:
        """
        Non-ASCII letters, which internationalised addresses use, are kept.
        """
        self.assertEqual(normalize_email("Zoë@Exämple.com"), "zoë@exämple.com")


class ParseSettingTests(SynchronousTestCase):
    """
    Tests for L{parse_setting}.
    """

    def test_name_control_characters(self) -> None:
        """
        A server name with a control character is rejected.
        """
        for value in ["x\x1by", "bell\x07", "del\x7f"]:
            error = self.assertRaises(ValidationError, parse_setting, "name", value)
            self.assertEqual(error.field, "name")

    def test_name_spaces(self) -> None:
        """
        Runs of white space in the name, tabs and newlines included, become
        one space.
        """
        self.assertEqual(parse_setting("name", " My\tidserver\n "), "My idserver")
