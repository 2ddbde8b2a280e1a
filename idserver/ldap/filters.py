"""
Search filters: the syntax tree, its BER form (RFC 4511 §4.5.1.7) and its
string form (RFC 4515).

Assertion values are kept as text decoded from UTF-8; octets that are not
UTF-8 survive as surrogate escapes, so a value always encodes back to the
octets it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from idserver.ldap.ber import (
    DecodeError,
    encode_boolean,
    encode_octet_string,
    encode_tlv,
    read_boolean,
    read_tlv,
)

__all__ = [
    "MAX_FILTER_DEPTH",
    "MAX_FILTER_ITEMS",
    "And",
    "Approx",
    "Equality",
    "Extensible",
    "Filter",
    "FilterTooComplex",
    "GreaterOrEqual",
    "InvalidFilter",
    "LessOrEqual",
    "Not",
    "Or",
    "Present",
    "Substrings",
    "UnknownFilter",
    "decode_filter",
    "encode_filter",
    "format_filter",
    "parse_filter",
]

# Filters nest far less in practice; the limit bounds recursion and stack.
MAX_FILTER_DEPTH = 64
# A filter is evaluated once per candidate entry, so its size multiplies
# the cost of a search.
MAX_FILTER_ITEMS = 1024


@dataclass(frozen=True, slots=True)
class And:
    """
    TRUE when every member is; the empty AND is TRUE (RFC 4526).
    """

    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """
    TRUE when any member is; the empty OR is FALSE (RFC 4526).
    """

    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    filter: Filter


@dataclass(frozen=True, slots=True)
class Equality:
    attribute: str
    value: str


@dataclass(frozen=True, slots=True)
class Substrings:
    attribute: str
    initial: str | None
    any: tuple[str, ...]
    final: str | None


@dataclass(frozen=True, slots=True)
class GreaterOrEqual:
    attribute: str
    value: str


@dataclass(frozen=True, slots=True)
class LessOrEqual:
    attribute: str
    value: str


@dataclass(frozen=True, slots=True)
class Present:
    attribute: str


@dataclass(frozen=True, slots=True)
class Approx:
    attribute: str
    value: str


@dataclass(frozen=True, slots=True)
class Extensible:
    """
    An extensible match: at least one of C{rule} and C{attribute} is set.
    """

    rule: str | None
    attribute: str | None
    value: str
    dn_attributes: bool = False


@dataclass(frozen=True, slots=True)
class UnknownFilter:
    """
    A filter choice added after RFC 4511, which evaluates to Undefined.
    """

    tag: int
    contents: bytes


Filter: TypeAlias = (
    And
    | Or
    | Not
    | Equality
    | Substrings
    | GreaterOrEqual
    | LessOrEqual
    | Present
    | Approx
    | Extensible
    | UnknownFilter
)


class InvalidFilter(ValueError):
    """
    A filter string does not follow RFC 4515.
    """


# BER


_AND, _OR, _NOT = 0xA0, 0xA1, 0xA2
_EQUALITY, _SUBSTRINGS, _GREATER, _LESS = 0xA3, 0xA4, 0xA5, 0xA6
_PRESENT, _APPROX, _EXTENSIBLE = 0x87, 0xA8, 0xA9
_AVA_CLASSES: dict[int, type[Equality | GreaterOrEqual | LessOrEqual | Approx]] = {
    _EQUALITY: Equality,
    _GREATER: GreaterOrEqual,
    _LESS: LessOrEqual,
    _APPROX: Approx,
}


def _text(data: bytes, start: int, end: int) -> str:
    return data[start:end].decode("utf-8", "surrogateescape")


def _attribute(data: bytes, start: int, end: int) -> str:
    # AttributeDescription is ASCII (RFC 4512 §2.5): a name or an OID with
    # options.
    try:
        name = data[start:end].decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("attribute description is not ASCII") from None
    if not name:
        raise DecodeError("empty attribute description")
    return name


class FilterTooComplex(DecodeError):
    """
    A filter nests deeper than L{MAX_FILTER_DEPTH} or has more than
    L{MAX_FILTER_ITEMS} items. Its encoding may be valid, so the request is
    rejected, not the connection.
    """


class _Budget:
    """
    Counts filter items while decoding, so a wide filter is rejected as
    early as a deep one.
    """

    def __init__(self) -> None:
        self.items = 0

    def spend(self) -> None:
        self.items += 1
        if self.items > MAX_FILTER_ITEMS:
            raise FilterTooComplex(f"the filter has more than {MAX_FILTER_ITEMS} items")


def decode_filter(data: bytes, position: int, end: int) -> tuple[Filter, int]:
    """
    Decode the filter that starts at C{position}.

    @return: the filter and the position after it.
    @raise FilterTooComplex: the filter nests deeper than
        L{MAX_FILTER_DEPTH} or has more than L{MAX_FILTER_ITEMS} items.
    @raise DecodeError: the encoding is invalid.
    """
    return _decode(data, position, end, 0, _Budget())


def _decode(
    data: bytes, position: int, end: int, depth: int, budget: _Budget
) -> tuple[Filter, int]:
    if depth > MAX_FILTER_DEPTH:
        raise FilterTooComplex(f"the filter is nested deeper than {MAX_FILTER_DEPTH}")
    budget.spend()
    tag, start, stop = read_tlv(data, position, end)

    if tag == _AND or tag == _OR:
        members = []
        cursor = start
        while cursor < stop:
            member, cursor = _decode(data, cursor, stop, depth + 1, budget)
            members.append(member)
        return (And(tuple(members)) if tag == _AND else Or(tuple(members))), stop

    if tag == _NOT:
        inner, cursor = _decode(data, start, stop, depth + 1, budget)
        if cursor != stop:
            raise DecodeError("NOT contains more than one filter")
        return Not(inner), stop

    if tag in _AVA_CLASSES:
        attribute_tag, a_start, a_stop = read_tlv(data, start, stop)
        value_tag, v_start, v_stop = read_tlv(data, a_stop, stop)
        if attribute_tag != 0x04 or value_tag != 0x04 or v_stop != stop:
            raise DecodeError("malformed attribute value assertion")
        node = _AVA_CLASSES[tag](
            _attribute(data, a_start, a_stop), _text(data, v_start, v_stop)
        )
        return node, stop

    if tag == _PRESENT:
        return Present(_attribute(data, start, stop)), stop

    if tag == _SUBSTRINGS:
        return _decode_substrings(data, start, stop), stop

    if tag == _EXTENSIBLE:
        return _decode_extensible(data, start, stop), stop

    # RFC 4511 §4.5.1: Filter is an extensible CHOICE; a context-specific
    # choice not known here is Undefined, anything else is malformed.
    if tag & 0xC0 == 0x80 and (tag & 0x1F) > 9:
        return UnknownFilter(tag, bytes(data[start:stop])), stop
    raise DecodeError(f"unknown filter tag 0x{tag:02x}")


def _decode_substrings(data: bytes, start: int, stop: int) -> Substrings:
    attribute_tag, a_start, a_stop = read_tlv(data, start, stop)
    list_tag, cursor, list_stop = read_tlv(data, a_stop, stop)
    if attribute_tag != 0x04 or list_tag != 0x30 or list_stop != stop:
        raise DecodeError("malformed substring filter")
    initial: str | None = None
    final: str | None = None
    middle: list[str] = []
    count = 0
    while cursor < list_stop:
        tag, v_start, v_stop = read_tlv(data, cursor, list_stop)
        value = _text(data, v_start, v_stop)
        if tag == 0x80 and count == 0:
            initial = value
        elif tag == 0x81 and final is None:
            middle.append(value)
        elif tag == 0x82 and final is None:
            final = value
        else:
            raise DecodeError("substring components out of order")
        count += 1
        cursor = v_stop
    if count == 0:
        raise DecodeError("substring filter without components")
    return Substrings(_attribute(data, a_start, a_stop), initial, tuple(middle), final)


def _decode_extensible(data: bytes, start: int, stop: int) -> Extensible:
    rule: str | None = None
    attribute: str | None = None
    value: str | None = None
    dn_attributes = False
    cursor = start
    last = 0
    while cursor < stop:
        tag, v_start, v_stop = read_tlv(data, cursor, stop)
        number = tag & 0x1F
        if tag & 0xE0 != 0x80 or not 1 <= number <= 4 or number <= last:
            raise DecodeError("malformed matching rule assertion")
        last = number
        if number == 1:
            rule = _attribute(data, v_start, v_stop)
        elif number == 2:
            attribute = _attribute(data, v_start, v_stop)
        elif number == 3:
            value = _text(data, v_start, v_stop)
        else:
            dn_attributes = read_boolean(data, v_start, v_stop)
        cursor = v_stop
    if value is None or (rule is None and attribute is None):
        raise DecodeError("matching rule assertion without value, rule or type")
    return Extensible(rule, attribute, value, dn_attributes)


def _value(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def encode_filter(node: Filter) -> bytes:
    """
    Encode a filter in BER.
    """
    if isinstance(node, And | Or):
        tag = _AND if isinstance(node, And) else _OR
        return encode_tlv(tag, b"".join(encode_filter(f) for f in node.filters))
    if isinstance(node, Not):
        return encode_tlv(_NOT, encode_filter(node.filter))
    if isinstance(node, Present):
        return encode_octet_string(node.attribute, _PRESENT)
    if isinstance(node, Substrings):
        parts = []
        if node.initial is not None:
            parts.append(encode_tlv(0x80, _value(node.initial)))
        parts.extend(encode_tlv(0x81, _value(v)) for v in node.any)
        if node.final is not None:
            parts.append(encode_tlv(0x82, _value(node.final)))
        return encode_tlv(
            _SUBSTRINGS,
            encode_octet_string(node.attribute) + encode_tlv(0x30, b"".join(parts)),
        )
    if isinstance(node, Extensible):
        parts = []
        if node.rule is not None:
            parts.append(encode_octet_string(node.rule, 0x81))
        if node.attribute is not None:
            parts.append(encode_octet_string(node.attribute, 0x82))
        parts.append(encode_tlv(0x83, _value(node.value)))
        if node.dn_attributes:
            parts.append(encode_boolean(True, 0x84))
        return encode_tlv(_EXTENSIBLE, b"".join(parts))
    if isinstance(node, UnknownFilter):
        return encode_tlv(node.tag, node.contents)
    tag = {
        Equality: _EQUALITY,
        GreaterOrEqual: _GREATER,
        LessOrEqual: _LESS,
        Approx: _APPROX,
    }[type(node)]
    return encode_tlv(
        tag, encode_octet_string(node.attribute) + encode_tlv(0x04, _value(node.value))
    )


# The string form (RFC 4515)


_ATTRIBUTE_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.;"
)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0
        self.items = 0

    def fail(self, what: str) -> InvalidFilter:
        return InvalidFilter(f"{what} at offset {self.position} of {self.text!r}")

    def peek(self) -> str:
        return self.text[self.position] if self.position < len(self.text) else ""

    def expect(self, character: str) -> None:
        if self.peek() != character:
            raise self.fail(f"expected {character!r}")
        self.position += 1

    def filter(self, depth: int) -> Filter:
        if depth > MAX_FILTER_DEPTH:
            raise self.fail(f"filter nested deeper than {MAX_FILTER_DEPTH}")
        self.items += 1
        if self.items > MAX_FILTER_ITEMS:
            raise self.fail(f"more than {MAX_FILTER_ITEMS} filter items")
        self.expect("(")
        kind = self.peek()
        node: Filter
        if kind in "&|":
            self.position += 1
            members = []
            while self.peek() == "(":
                members.append(self.filter(depth + 1))
            node = And(tuple(members)) if kind == "&" else Or(tuple(members))
        elif kind == "!":
            self.position += 1
            node = Not(self.filter(depth + 1))
        else:
            node = self.item()
        self.expect(")")
        return node

    def attribute(self) -> str:
        start = self.position
        while self.peek() and self.peek() in _ATTRIBUTE_CHARACTERS:
            self.position += 1
        return self.text[start : self.position]

    def item(self) -> Filter:
        attribute = self.attribute()
        if self.peek() == ":":
            return self.extensible(attribute or None)
        if not attribute:
            raise self.fail("missing attribute description")

        operator = self.peek()
        if operator in "~<>":
            self.position += 1
            self.expect("=")
            value = self.value()
            if operator == "~":
                return Approx(attribute, value)
            if operator == ">":
                return GreaterOrEqual(attribute, value)
            return LessOrEqual(attribute, value)

        self.expect("=")
        pieces = [self.value()]
        while self.peek() == "*":
            self.position += 1
            pieces.append(self.value())
        if len(pieces) == 1:
            return Equality(attribute, pieces[0])
        if pieces == ["", ""]:
            return Present(attribute)
        if any(piece == "" for piece in pieces[1:-1]):
            raise self.fail("empty substring component")
        return Substrings(
            attribute,
            pieces[0] or None,
            tuple(pieces[1:-1]),
            pieces[-1] or None,
        )

    def extensible(self, attribute: str | None) -> Extensible:
        dn_attributes = False
        rule = None
        self.expect(":")
        if self.text.startswith("dn:", self.position) or self.text.startswith(
            "DN:", self.position
        ):
            dn_attributes = True
            self.position += 3
        if self.peek() != "=":
            rule = self.attribute()
            if not rule:
                raise self.fail("missing matching rule")
            self.expect(":")
        if rule is None and attribute is None:
            raise self.fail("extensible match without rule or attribute")
        self.expect("=")
        return Extensible(rule, attribute, self.value(), dn_attributes)

    def value(self) -> str:
        octets = bytearray()
        text = self.text
        while self.position < len(text):
            character = text[self.position]
            if character in "()*":
                break
            if character == "\\":
                digits = text[self.position + 1 : self.position + 3]
                try:
                    if len(digits) != 2:
                        raise ValueError
                    octets.append(int(digits, 16))
                except ValueError:
                    raise self.fail("invalid escape") from None
                self.position += 3
                continue
            if character == "\x00":
                raise self.fail("unescaped NUL")
            octets += character.encode("utf-8", "surrogateescape")
            self.position += 1
        return octets.decode("utf-8", "surrogateescape")


def parse_filter(text: str) -> Filter:
    """
    Parse the string form of a filter (RFC 4515). A string without the
    outer parentheses, as many command line tools accept, is taken as one
    item.

    @raise InvalidFilter: the string is malformed or too deep.
    """
    stripped = text.strip()
    if not stripped.startswith("("):
        stripped = f"({stripped})"
    parser = _Parser(stripped)
    node = parser.filter(0)
    if parser.position != len(stripped):
        raise parser.fail("text after the filter")
    return node


def _escape(value: str) -> str:
    out = []
    for octet in _value(value):
        character = chr(octet)
        if character in "*()\\" or octet < 0x20 or octet >= 0x7F:
            out.append(f"\\{octet:02x}")
        else:
            out.append(character)
    return "".join(out)


def format_filter(node: Filter) -> str:
    """
    Return the string form of a filter, with every octet outside printable
    ASCII escaped.
    """
    if isinstance(node, And | Or):
        operator = "&" if isinstance(node, And) else "|"
        return f"({operator}{''.join(format_filter(f) for f in node.filters)})"
    if isinstance(node, Not):
        return f"(!{format_filter(node.filter)})"
    if isinstance(node, Present):
        return f"({node.attribute}=*)"
    if isinstance(node, Substrings):
        pieces = [_escape(node.initial or ""), *map(_escape, node.any)]
        pieces.append(_escape(node.final or ""))
        return f"({node.attribute}={'*'.join(pieces)})"
    if isinstance(node, Extensible):
        attribute = node.attribute or ""
        dn = ":dn" if node.dn_attributes else ""
        rule = f":{node.rule}" if node.rule else ""
        return f"({attribute}{dn}{rule}:={_escape(node.value)})"
    if isinstance(node, UnknownFilter):
        return f"(?unknown-0x{node.tag:02x})"
    operator = {Equality: "=", GreaterOrEqual: ">=", LessOrEqual: "<=", Approx: "~="}[
        type(node)
    ]
    return f"({node.attribute}{operator}{_escape(node.value)})"
