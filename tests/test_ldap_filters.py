"""
Tests for L{idserver.ldap.filters}: the string form (RFC 4515) and the BER
form (RFC 4511 §4.5.1.7) of search filters.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from ldaptor import ldapfilter
from twisted.trial.unittest import SynchronousTestCase

from idserver.ldap.ber import DecodeError, encode_tlv
from idserver.ldap.filters import (
    MAX_FILTER_DEPTH,
    MAX_FILTER_ITEMS,
    And,
    Approx,
    Equality,
    Extensible,
    Filter,
    GreaterOrEqual,
    InvalidFilter,
    LessOrEqual,
    Not,
    Or,
    Present,
    Substrings,
    UnknownFilter,
    decode_filter,
    encode_filter,
    format_filter,
    parse_filter,
)

names = st.sampled_from(["cn", "uid", "mail", "memberOf", "objectClass", "x-y;lang-de"])
assertion_values = st.text(max_size=12)
nonempty_values = st.text(min_size=1, max_size=8)

leaves = st.one_of(
    st.builds(Equality, names, assertion_values),
    st.builds(GreaterOrEqual, names, assertion_values),
    st.builds(LessOrEqual, names, assertion_values),
    st.builds(Approx, names, assertion_values),
    st.builds(Present, names),
    st.builds(
        Substrings,
        names,
        st.none() | nonempty_values,
        st.lists(nonempty_values, max_size=3).map(tuple),
        st.none() | nonempty_values,
    ).filter(lambda s: s.initial is not None or s.any or s.final is not None),
    st.builds(
        Extensible,
        st.none() | st.sampled_from(["2.5.13.2", "caseExactMatch"]),
        names,
        assertion_values,
        st.booleans(),
    ),
)

filters: st.SearchStrategy[Filter] = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda fs: And(tuple(fs))),
        st.lists(children, max_size=4).map(lambda fs: Or(tuple(fs))),
        children.map(Not),
    ),
    max_leaves=12,
)


def decode(data: bytes) -> Filter:
    node, end = decode_filter(data, 0, len(data))
    if end != len(data):
        raise AssertionError("trailing bytes")
    return node


class ParseTests(SynchronousTestCase):
    """
    Tests for L{parse_filter}.
    """

    def test_items(self) -> None:
        """
        Each item type parses to its node.
        """
        cases = {
            "(cn=alice)": Equality("cn", "alice"),
            "(cn>=a)": GreaterOrEqual("cn", "a"),
            "(cn<=a)": LessOrEqual("cn", "a"),
            "(cn~=a)": Approx("cn", "a"),
            "(cn=*)": Present("cn"),
            "(cn=a*)": Substrings("cn", "a", (), None),
            "(cn=*a)": Substrings("cn", None, (), "a"),
            "(cn=a*b*c)": Substrings("cn", "a", ("b",), "c"),
            "(cn=*b*)": Substrings("cn", None, ("b",), None),
            "(cn:=a)": Extensible(None, "cn", "a", False),
            "(cn:dn:2.5.13.5:=a)": Extensible("2.5.13.5", "cn", "a", True),
            "(:caseIgnoreMatch:=a)": Extensible("caseIgnoreMatch", None, "a", False),
            "(memberOf:1.2.840.113556.1.4.1941:=cn=x,dc=y)": Extensible(
                "1.2.840.113556.1.4.1941", "memberOf", "cn=x,dc=y", False
            ),
        }
        for text, node in cases.items():
            with self.subTest(text=text):
                self.assertEqual(parse_filter(text), node)

    def test_composites(self) -> None:
        """
        AND, OR and NOT nest; the empty AND and OR of RFC 4526 parse.
        """
        self.assertEqual(
            parse_filter("(&(objectClass=user)(|(uid=a)(!(mail=*))))"),
            And(
                (
                    Equality("objectClass", "user"),
                    Or((Equality("uid", "a"), Not(Present("mail")))),
                )
            ),
        )
        self.assertEqual(parse_filter("(&)"), And(()))
        self.assertEqual(parse_filter("(|)"), Or(()))

    def test_escapes(self) -> None:
        """
        Escaped characters are literal: C{\\2a} is an asterisk, not a
        wildcard, and escaped octets decode as UTF-8.
        """
        self.assertEqual(parse_filter(r"(cn=a\2ab)"), Equality("cn", "a*b"))
        self.assertEqual(parse_filter(r"(cn=\28x\29)"), Equality("cn", "(x)"))
        self.assertEqual(parse_filter(r"(cn=caf\c3\a9)"), Equality("cn", "café"))
        self.assertEqual(parse_filter(r"(cn=a\5c)"), Equality("cn", "a\\"))

    def test_without_parentheses(self) -> None:
        """
        A bare item is accepted, as command line tools do.
        """
        self.assertEqual(parse_filter("uid=alice"), Equality("uid", "alice"))

    def test_invalid(self) -> None:
        """
        Malformed filters raise L{InvalidFilter}.
        """
        for text in [
            "(cn=a",
            "(=a)",
            "(cn=a)(x=y)",
            "(cn=\\zz)",
            "(cn=a**b)",
            "(cn:=)x",
            "(!)",
        ]:
            with self.subTest(text=text):
                self.assertRaises(InvalidFilter, parse_filter, text)

    def test_too_deep(self) -> None:
        """
        A filter nested deeper than the limit is rejected without
        exhausting the stack.
        """
        depth = MAX_FILTER_DEPTH + 1
        self.assertRaises(
            InvalidFilter, parse_filter, "(!" * depth + "(cn=a)" + ")" * depth
        )
        deep = "(!" * 5000 + "(cn=a)" + ")" * 5000
        self.assertRaises(InvalidFilter, parse_filter, deep)

    @given(filters)
    def test_format_round_trip(self, node: Filter) -> None:
        """
        Formatting a filter and parsing the text gives the same filter.
        """
        self.assertEqual(parse_filter(format_filter(node)), node)

    @given(st.text(max_size=40))
    def test_parse_never_crashes(self, text: str) -> None:
        """
        Any string parses or raises L{InvalidFilter}.
        """
        try:
            parse_filter(text)
        except InvalidFilter:
            pass


class BERTests(SynchronousTestCase):
    """
    Tests for L{encode_filter} and L{decode_filter}.
    """

    @given(filters)
    def test_round_trip(self, node: Filter) -> None:
        """
        Decoding an encoded filter gives the filter back.
        """
        self.assertEqual(decode(encode_filter(node)), node)

    def test_matches_ldaptor(self) -> None:
        """
        The encoding equals the one ldaptor produces from the same text.
        """
        for text in [
            "(cn=alice)",
            "(&(objectClass=user)(|(username=bob)(mail=bob@example.com)))",
            "(!(mail=*))",
            "(cn=a*b*c)",
            "(uidNumber>=10000)",
            "(cn~=x)",
        ]:
            with self.subTest(text=text):
                theirs = ldapfilter.parseFilter(text).toWire()
                self.assertEqual(encode_filter(parse_filter(text)), theirs)

    def test_unknown_choice(self) -> None:
        """
        A context-specific filter choice past RFC 4511's is kept as
        L{UnknownFilter}; other unknown tags are errors.
        """
        self.assertEqual(decode(b"\xaa\x00"), UnknownFilter(0xAA, b""))
        self.assertRaises(DecodeError, decode, b"\x04\x00")

    def test_substrings_order(self) -> None:
        """
        A substring filter whose initial component is not first, or with a
        component after the final one, is malformed.
        """
        body = b"\x04\x02cn" + encode_tlv(0x30, b"\x81\x01a\x80\x01b")
        self.assertRaises(DecodeError, decode, encode_tlv(0xA4, body))
        body = b"\x04\x02cn" + encode_tlv(0x30, b"\x82\x01a\x81\x01b")
        self.assertRaises(DecodeError, decode, encode_tlv(0xA4, body))
        body = b"\x04\x02cn" + encode_tlv(0x30, b"")
        self.assertRaises(DecodeError, decode, encode_tlv(0xA4, body))

    def test_extensible_needs_rule_or_type(self) -> None:
        """
        An extensible match with neither rule nor type is malformed.
        """
        self.assertRaises(DecodeError, decode, encode_tlv(0xA9, b"\x83\x01a"))

    def test_depth_limit(self) -> None:
        """
        Deeply nested filters are rejected while decoding.
        """
        data = encode_filter(Present("cn"))
        for _ in range(MAX_FILTER_DEPTH + 1):
            data = encode_tlv(0xA2, data)
        self.assertRaises(DecodeError, decode, data)

    def test_size_limit(self) -> None:
        """
        Filters with too many items are rejected while decoding.
        """
        node = Or(tuple(Present("cn") for _ in range(MAX_FILTER_ITEMS + 1)))
        self.assertRaises(DecodeError, decode, encode_filter(node))

    def test_truncated(self) -> None:
        """
        Every truncation of a valid filter fails to decode cleanly.
        """
        data = encode_filter(parse_filter("(&(objectClass=user)(|(uid=a)(cn=b*c)))"))
        for end in range(len(data)):
            with self.subTest(end=end):
                self.assertRaises(DecodeError, decode_filter, data[:end], 0, end)
