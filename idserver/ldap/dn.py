"""
Distinguished names: parsing the string form of RFC 4514 and comparing
names with distinguishedNameMatch (RFC 4517 §4.2.15).

A parsed name is a tuple of RDNs, leaf first; an RDN is a tuple of
C{(attribute type, value)} pairs. Types are lower-cased and aliases and
OIDs of the types this server uses are replaced by their short names;
values are unescaped but otherwise kept as given.
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = [
    "DN",
    "RDN",
    "InvalidDN",
    "escape_value",
    "format_dn",
    "normalize_dn",
    "normalize_parsed",
    "normalize_value",
    "parse_dn",
]

AVA: TypeAlias = tuple[str, str]
RDN: TypeAlias = tuple[AVA, ...]
DN: TypeAlias = tuple[RDN, ...]

# Names and OIDs that mean the same attribute type as the short name, for
# the types that appear in this server's names and in bind DNs.
_TYPE_ALIASES = {
    "2.5.4.3": "cn",
    "commonname": "cn",
    "0.9.2342.19200300.100.1.1": "uid",
    "userid": "uid",
    "0.9.2342.19200300.100.1.25": "dc",
    "domaincomponent": "dc",
    "2.5.4.11": "ou",
    "organizationalunitname": "ou",
    "2.5.4.10": "o",
    "organizationname": "o",
    "0.9.2342.19200300.100.1.3": "mail",
    "rfc822mailbox": "mail",
}

_SPECIAL = frozenset(',+"\\<>;=')
_HEX = frozenset("0123456789abcdefABCDEF")
_TYPE_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-."
)
# OCTET STRING and the character string types whose contents are text.
_STRING_TAGS = frozenset({0x04, 0x0C, 0x13, 0x14, 0x16, 0x1A, 0x1E})


class InvalidDN(ValueError):
    """
    A string is not a distinguished name in the form of RFC 4514.
    """


def parse_dn(text: str) -> DN:
    """
    Parse the string form of a distinguished name.

    Spaces around the separators are accepted, as many clients send them,
    and unescaped spaces at the ends of a value are not part of it.

    @raise InvalidDN: the string is malformed.
    """
    if not text.strip():
        return ()
    if _PLAIN.isdisjoint(text):
        fast = _parse_plain(text)
        if fast is not None:
            return fast
    return _parse_full(text)


def _parse_full(text: str) -> DN:
    rdns: list[RDN] = []
    current: list[AVA] = []
    position = 0
    length = len(text)
    while True:
        attribute_type, position = _parse_type(text, position)
        value, position = _parse_value(text, position)
        current.append((attribute_type, value))
        if position >= length:
            rdns.append(tuple(current))
            return tuple(rdns)
        separator = text[position]
        position += 1
        if separator in ",;":
            rdns.append(tuple(current))
            current = []
        elif separator != "+":
            raise InvalidDN(f"unexpected {separator!r} in {text!r}")


# Characters that need the full parser; names without them (the common
# case, such as cn=uid-...,ou=users,dc=cloudron) split on "," and "=".
_PLAIN = frozenset('\\"+;#<>\x00')


def _parse_plain(text: str) -> DN | None:
    """
    Parse a name without escapes, quotes or multi-valued RDNs, or return
    C{None} to leave it to the full parser (which also reports errors).
    """
    rdns = []
    for part in text.split(","):
        attribute_type, equals, value = part.partition("=")
        attribute_type = attribute_type.strip()
        value = value.strip(" ")
        if (
            not equals
            or not attribute_type
            or "=" in value
            or not _TYPE_CHARACTERS.issuperset(attribute_type)
        ):
            return None
        lowered = attribute_type.lower()
        if lowered.startswith("oid."):
            lowered = lowered[4:]
        rdns.append(((_TYPE_ALIASES.get(lowered, lowered), value),))
    return tuple(rdns)


def _parse_type(text: str, position: int) -> tuple[str, int]:
    length = len(text)
    while position < length and text[position] == " ":
        position += 1
    start = position
    while position < length and text[position] in _TYPE_CHARACTERS:
        position += 1
    attribute_type = text[start:position]
    while position < length and text[position] == " ":
        position += 1
    if not attribute_type or position >= length or text[position] != "=":
        raise InvalidDN(f"missing attribute type or '=' in {text!r}")
    lowered = attribute_type.lower()
    if lowered.startswith("oid."):
        lowered = lowered[4:]
    return _TYPE_ALIASES.get(lowered, lowered), position + 1


def _parse_value(text: str, position: int) -> tuple[str, int]:
    length = len(text)
    while position < length and text[position] == " ":
        position += 1
    if position < length and text[position] == "#":
        return _parse_hex_value(text, position + 1)
    if position < length and text[position] == '"':
        return _parse_quoted_value(text, position + 1)

    octets = bytearray()
    # The length of the value up to its last octet that is not an
    # unescaped space: trailing unescaped spaces are dropped at the end.
    kept = 0
    while position < length:
        character = text[position]
        if character in ",+;":
            break
        if character == "\\":
            if position + 1 >= length:
                raise InvalidDN(f"lone backslash at the end of {text!r}")
            following = text[position + 1]
            pair = text[position + 1 : position + 3]
            if len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
                octets.append(int(pair, 16))
                position += 3
            elif following in _SPECIAL or following in " #":
                octets += following.encode("utf-8")
                position += 2
            else:
                raise InvalidDN(f"invalid escape '\\{following}' in {text!r}")
            kept = len(octets)
            continue
        if character in '"<>=' or character == "\x00":
            raise InvalidDN(f"unescaped {character!r} in {text!r}")
        octets += character.encode("utf-8", "surrogatepass")
        position += 1
        if character != " ":
            kept = len(octets)
    try:
        return octets[:kept].decode("utf-8"), position
    except UnicodeDecodeError:
        raise InvalidDN(f"escaped octets are not UTF-8 in {text!r}") from None


def _parse_hex_value(text: str, position: int) -> tuple[str, int]:
    start = position
    length = len(text)
    while position < length and text[position] in _HEX:
        position += 1
    digits = text[start:position]
    while position < length and text[position] == " ":
        position += 1
    if (
        not digits
        or len(digits) % 2
        or (position < length and text[position] not in ",+;")
    ):
        raise InvalidDN(f"invalid hex value in {text!r}")
    encoded = bytes.fromhex(digits)
    # The value is a BER element (RFC 4514 §2.4); text types become their
    # string, anything else stays in its '#' form.
    if len(encoded) >= 2 and encoded[0] in _STRING_TAGS and encoded[1] < 0x80:
        if encoded[1] == len(encoded) - 2:
            try:
                return encoded[2:].decode("utf-8"), position
            except UnicodeDecodeError:
                pass
    return "#" + digits.lower(), position


def _parse_quoted_value(text: str, position: int) -> tuple[str, int]:
    # RFC 1779 quoting, which RFC 4514 §4 lets servers accept.
    pieces: list[str] = []
    length = len(text)
    while position < length:
        character = text[position]
        if character == "\\" and position + 1 < length:
            pieces.append(text[position + 1])
            position += 2
        elif character == '"':
            position += 1
            while position < length and text[position] == " ":
                position += 1
            if position < length and text[position] not in ",+;":
                raise InvalidDN(f"text after a quoted value in {text!r}")
            return "".join(pieces), position
        else:
            pieces.append(character)
            position += 1
    raise InvalidDN(f"unterminated quoted value in {text!r}")


def normalize_value(value: str) -> str:
    """
    Normalise an attribute value for caseIgnoreMatch: fold case and treat
    runs of spaces as one, with none at the ends (RFC 4518 §2.6.1).
    """
    return " ".join(value.split()).casefold()


def normalize_parsed(dn: DN) -> str:
    """
    Return the normalised string form of a parsed name: types in lower case,
    values compared case-insensitively, the values of a multi-valued RDN in
    sorted order. Two names are equal under distinguishedNameMatch exactly
    when their normalised forms are equal.
    """
    return ",".join(
        "+".join(
            sorted(
                f"{attribute_type}={escape_value(normalize_value(value))}"
                for attribute_type, value in rdn
            )
        )
        for rdn in dn
    )


# Recently normalised names; the same base DNs and group DNs recur in the
# requests of an application.
_NORMALIZED: dict[str, str] = {}
_NORMALIZED_SIZE = 4096


def normalize_dn(text: str) -> str:
    """
    Parse C{text} and return its normalised form (see L{normalize_parsed}).

    @raise InvalidDN: the string is malformed.
    """
    normalized = _NORMALIZED.get(text)
    if normalized is None:
        normalized = normalize_parsed(parse_dn(text))
        if len(_NORMALIZED) >= _NORMALIZED_SIZE:
            _NORMALIZED.clear()
        _NORMALIZED[text] = normalized
    return normalized


def escape_value(value: str) -> str:
    """
    Escape an attribute value for the string form of a name (RFC 4514
    §2.4).
    """
    if not value:
        return value
    escaped = []
    for character in value:
        if character in _SPECIAL:
            escaped.append("\\" + character)
        elif character == "\x00":
            escaped.append("\\00")
        else:
            escaped.append(character)
    if escaped[0] in (" ", "#"):
        escaped[0] = "\\" + escaped[0]
    if escaped[-1] == " ":
        escaped[-1] = "\\ "
    return "".join(escaped)


def format_dn(dn: DN) -> str:
    """
    Return the string form of a parsed name.
    """
    return ",".join(
        "+".join(
            f"{attribute_type}={escape_value(value)}" for attribute_type, value in rdn
        )
        for rdn in dn
    )
