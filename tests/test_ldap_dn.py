"""
Tests for L{idserver.ldap.dn}: the string form of distinguished names
(RFC 4514) and distinguishedNameMatch.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from idserver.ldap import dn
from idserver.ldap.dn import (
    InvalidDN,
    escape_value,
    format_dn,
    normalize_dn,
    parse_dn,
)

attribute_types = st.sampled_from(["cn", "ou", "dc", "uid", "mail", "o"])
values = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1,
    max_size=20,
).filter(lambda v: v.strip() == v and v.strip())
rdns = st.lists(st.tuples(attribute_types, values), min_size=1, max_size=3).map(tuple)
dns = st.lists(rdns, min_size=0, max_size=5).map(tuple)


class ParseTests(SynchronousTestCase):
    """
    Tests for L{parse_dn}.
    """

    def test_simple(self) -> None:
        """
        A name splits into RDNs, leaf first, with lower-cased types.
        """
        self.assertEqual(
            parse_dn("CN=Alice,OU=users,DC=cloudron"),
            ((("cn", "Alice"),), (("ou", "users"),), (("dc", "cloudron"),)),
        )

    def test_empty(self) -> None:
        """
        The empty string is the empty name (the root DSE).
        """
        self.assertEqual(parse_dn(""), ())

    def test_multi_valued(self) -> None:
        """
        C{+} joins the values of one RDN.
        """
        self.assertEqual(
            parse_dn("cn=alice+totpToken=123456,ou=users"),
            ((("cn", "alice"), ("totptoken", "123456")), (("ou", "users"),)),
        )

    def test_escapes(self) -> None:
        """
        Backslash escapes of special characters and hex pairs are unescaped,
        hex pairs as UTF-8.
        """
        self.assertEqual(parse_dn(r"cn=a\,b\+c\=d"), ((("cn", "a,b+c=d"),),))
        self.assertEqual(parse_dn(r"cn=caf\c3\a9"), ((("cn", "café"),),))
        self.assertEqual(parse_dn(r"cn=\23x\20"), ((("cn", "#x "),),))

    def test_spaces_around_separators(self) -> None:
        """
        Spaces around separators are ignored and unescaped trailing spaces
        are not part of a value, but inner spaces are.
        """
        self.assertEqual(
            parse_dn("cn = John  Smith , ou=users"),
            ((("cn", "John  Smith"),), (("ou", "users"),)),
        )

    def test_aliases(self) -> None:
        """
        OIDs and long names of known types map to the short names.
        """
        self.assertEqual(
            parse_dn("2.5.4.3=x,commonName=y,OID.2.5.4.11=z"),
            ((("cn", "x"),), (("cn", "y"),), (("ou", "z"),)),
        )

    def test_hex_value(self) -> None:
        """
        A C{#} value holding a BER string decodes to the string.
        """
        self.assertEqual(parse_dn("cn=#04036162"), ((("cn", "#04036162"),),))
        self.assertEqual(parse_dn("cn=#0403616263"), ((("cn", "abc"),),))

    def test_quoted_value(self) -> None:
        """
        RFC 1779 quoted values are accepted.
        """
        self.assertEqual(
            parse_dn('cn="a, b",dc=x'), ((("cn", "a, b"),), (("dc", "x"),))
        )

    def test_invalid(self) -> None:
        """
        Malformed names raise L{InvalidDN}.
        """
        for text in [
            "cn",
            "=x",
            "cn=x,",
            "cn=a\\",
            "cn=a\\q",
            "cn=a=b",
            "cn=#zz",
            'cn="open',
            "cn=\\ff",
            "cn=x;;",
        ]:
            with self.subTest(text=text):
                self.assertRaises(InvalidDN, parse_dn, text)


class NormalizeTests(SynchronousTestCase):
    """
    Tests for L{normalize_dn}.
    """

    def test_case_and_spaces(self) -> None:
        """
        Names equal under distinguishedNameMatch normalise equally.
        """
        self.assertEqual(
            normalize_dn("CN=Admins, OU=Groups,DC=Cloudron"),
            normalize_dn("cn=admins,ou=groups,dc=cloudron"),
        )

    def test_escape_forms(self) -> None:
        """
        A character escaped as a hex pair equals the character.
        """
        self.assertEqual(normalize_dn(r"cn=a\2cb"), normalize_dn(r"cn=a\,b"))

    def test_multi_valued_order(self) -> None:
        """
        The order of the values of an RDN does not matter.
        """
        self.assertEqual(normalize_dn("cn=a+uid=b"), normalize_dn("uid=B+cn=A"))

    def test_different(self) -> None:
        """
        Different names normalise differently.
        """
        self.assertNotEqual(normalize_dn("cn=a,dc=x"), normalize_dn("cn=a,dc=y"))

    @given(dns)
    def test_round_trip(self, dn: tuple) -> None:  # type: ignore[type-arg]
        """
        Formatting a parsed name and parsing it again gives the same name.
        """
        self.assertEqual(parse_dn(format_dn(dn)), dn)

    @given(dns)
    def test_normalize_idempotent(self, dn: tuple) -> None:  # type: ignore[type-arg]
        """
        A normalised name normalises to itself.
        """
        normalized = normalize_dn(format_dn(dn))
        self.assertEqual(normalize_dn(normalized), normalized)

    @given(st.text(alphabet="cnoud=, xyzAB.-1é", max_size=30))
    def test_fast_path_agrees(self, text: str) -> None:
        """
        Names without escapes parse the same with the fast path as with the
        full parser.
        """
        fast = dn._parse_plain(text)
        if fast is None:
            return
        self.assertEqual(fast, dn._parse_full(text))

    @given(st.text(max_size=40))
    def test_parse_never_crashes(self, text: str) -> None:
        """
        Any string parses or raises L{InvalidDN}, nothing else.
        """
        try:
            parse_dn(text)
        except InvalidDN:
            pass


class EscapeTests(SynchronousTestCase):
    """
    Tests for L{escape_value}.
    """

    def test_specials(self) -> None:
        """
        Special characters, a leading C{#} or space and a trailing space
        are escaped.
        """
        self.assertEqual(
            escape_value('a,b+c"d\\e<f>g;h=i'), r"a\,b\+c\"d\\e\<f\>g\;h\=i"
        )
        self.assertEqual(escape_value("#x"), r"\#x")
        self.assertEqual(escape_value(" x "), r"\ x\ ")
