"""
The attribute types this server publishes and how their values compare.

Attribute names compare case-insensitively (RFC 4512 §2.5), and each type
also answers to its OID and to the aliases of the standard schema. Values
are normalised once per syntax, so equality, substring and ordering checks
compare prepared values:

 - C{string}: caseIgnoreMatch and caseIgnoreSubstringsMatch (RFC 4517),
   with case folded and runs of spaces collapsed (RFC 4518 §2.6.1), and
   caseIgnoreOrderingMatch;
 - C{oid}: object class names, compared case-insensitively, no ordering;
 - C{dn}: distinguishedNameMatch on the normalised name; substrings match
   the normalised string form, which the standard schema does not define
   but group-membership filters such as C{(memberOf=cn=admins*)} expect;
 - C{integer}: integerMatch and integerOrderingMatch, no substrings;
 - C{time}: generalizedTimeMatch and generalizedTimeOrderingMatch in UTC,
   no substrings;
 - C{uuid}: uuidMatch and uuidOrderingMatch (RFC 4530) on the lower-case
   form, with substrings on that form too.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from idserver.ldap.dn import InvalidDN, normalize_dn, normalize_value

__all__ = [
    "ATTRIBUTE_TYPES",
    "AttributeType",
    "InvalidValue",
    "Syntax",
    "attribute_type",
    "format_time",
    "normalize",
]


class Syntax(enum.Enum):
    """
    The value syntaxes, each with its own matching rules.
    """

    string = "string"
    oid = "oid"
    dn = "dn"
    integer = "integer"
    time = "time"
    uuid = "uuid"


class InvalidValue(ValueError):
    """
    An assertion value is not valid for the syntax of its attribute, so the
    filter item that holds it is Undefined (RFC 4511 §4.5.1.7).
    """


@dataclass(frozen=True)
class AttributeType:
    """
    One published attribute type.

    @ivar name: the spelling used in returned entries.
    @ivar key: C{name} in lower case, the key of entry attribute maps.
    @ivar operational: returned only when named or with C{+} (RFC 3673).
    @ivar names: every lower-case name and OID that refers to this type.
    """

    name: str
    syntax: Syntax
    operational: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.key, *(alias.lower() for alias in self.aliases))

    @property
    def ordered(self) -> bool:
        """
        Whether the syntax has an ordering rule for C{>=} and C{<=}.
        """
        return self.syntax not in (Syntax.dn, Syntax.oid)

    @property
    def substrings(self) -> bool:
        """
        Whether substring filters apply to this type.
        """
        return self.syntax not in (Syntax.integer, Syntax.time)


_S = Syntax

ATTRIBUTE_TYPES: tuple[AttributeType, ...] = (
    AttributeType("objectClass", _S.oid, aliases=("2.5.4.0",)),
    AttributeType("objectCategory", _S.string),
    AttributeType("cn", _S.string, aliases=("commonName", "2.5.4.3")),
    AttributeType("uid", _S.string, aliases=("userid", "0.9.2342.19200300.100.1.1")),
    AttributeType("username", _S.string),
    AttributeType("sAMAccountName", _S.string, aliases=("1.2.840.113556.1.4.221",)),
    AttributeType(
        "mail", _S.string, aliases=("rfc822Mailbox", "0.9.2342.19200300.100.1.3")
    ),
    AttributeType("mailAlternateAddress", _S.string),
    AttributeType("displayName", _S.string, aliases=("2.16.840.1.113730.3.1.241",)),
    AttributeType("givenName", _S.string, aliases=("gn", "2.5.4.42")),
    AttributeType("sn", _S.string, aliases=("surname", "2.5.4.4")),
    AttributeType("memberOf", _S.dn, aliases=("1.2.840.113556.1.2.102",)),
    AttributeType("uidNumber", _S.integer, aliases=("1.3.6.1.1.1.1.0",)),
    AttributeType("gidNumber", _S.integer, aliases=("1.3.6.1.1.1.1.1",)),
    AttributeType("homeDirectory", _S.string, aliases=("1.3.6.1.1.1.1.3",)),
    AttributeType("loginShell", _S.string, aliases=("1.3.6.1.1.1.1.4",)),
    AttributeType("memberUid", _S.string, aliases=("1.3.6.1.1.1.1.12",)),
    AttributeType("member", _S.dn, aliases=("2.5.4.31",)),
    AttributeType("ou", _S.string, aliases=("organizationalUnitName", "2.5.4.11")),
    AttributeType("o", _S.string, aliases=("organizationName", "2.5.4.10")),
    AttributeType(
        "dc", _S.string, aliases=("domainComponent", "0.9.2342.19200300.100.1.25")
    ),
    AttributeType("entryUUID", _S.uuid, operational=True, aliases=("1.3.6.1.1.16.4",)),
    AttributeType("createTimestamp", _S.time, operational=True, aliases=("2.5.18.1",)),
    AttributeType("modifyTimestamp", _S.time, operational=True, aliases=("2.5.18.2",)),
    AttributeType(
        "pwdChangedTime",
        _S.time,
        operational=True,
        aliases=("1.3.6.1.4.1.42.2.27.8.1.16",),
    ),
    # The root DSE (RFC 4512 §5.1).
    AttributeType(
        "namingContexts",
        _S.dn,
        operational=True,
        aliases=("1.3.6.1.4.1.1466.101.120.5",),
    ),
    AttributeType(
        "supportedLDAPVersion",
        _S.integer,
        operational=True,
        aliases=("1.3.6.1.4.1.1466.101.120.15",),
    ),
    AttributeType(
        "supportedControl",
        _S.oid,
        operational=True,
        aliases=("1.3.6.1.4.1.1466.101.120.13",),
    ),
    AttributeType(
        "supportedExtension",
        _S.oid,
        operational=True,
        aliases=("1.3.6.1.4.1.1466.101.120.7",),
    ),
    AttributeType(
        "supportedFeatures",
        _S.oid,
        operational=True,
        aliases=("1.3.6.1.4.1.4203.1.3.5",),
    ),
    AttributeType("vendorName", _S.string, operational=True, aliases=("1.3.6.1.1.4",)),
    AttributeType(
        "vendorVersion", _S.string, operational=True, aliases=("1.3.6.1.1.5",)
    ),
)

_BY_NAME: dict[str, AttributeType] = {
    name: attribute for attribute in ATTRIBUTE_TYPES for name in attribute.names
}


def attribute_type(description: str) -> AttributeType | None:
    """
    Look up the type of an attribute description, ignoring case.

    @return: C{None} for an unknown name, and for a description with
        options such as C{cn;lang-de}: no value here carries options, so
        such a description names no values.
    """
    return _BY_NAME.get(description.lower())


_TIME = re.compile(
    r"(\d{4})(\d{2})(\d{2})(\d{2})(?:(\d{2})(\d{2})?)?(?:[.,](\d+))?"
    r"(Z|[+-]\d{2}(?:\d{2})?)"
)


def _parse_time(value: str) -> str:
    match = _TIME.fullmatch(value.strip())
    if match is None:
        raise InvalidValue(f"invalid GeneralizedTime {value!r}")
    year, month, day, hour, minute, second, _fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute or 0),
            int(second or 0),
        )
    except ValueError:
        raise InvalidValue(f"invalid GeneralizedTime {value!r}") from None
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5] or 0))
        moment -= sign * offset
    # NOTE: fractions of a second are ignored; stored times have none.
    return moment.strftime("%Y%m%d%H%M%S")


def format_time(moment: datetime) -> str:
    """
    Format a time as GeneralizedTime in UTC, C{YYYYMMDDHHMMSSZ}.
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y%m%d%H%M%SZ")


def normalize(syntax: Syntax, value: str) -> str | int:
    """
    Prepare a value of the given syntax for comparison.

    @raise InvalidValue: the value is not valid for the syntax.
    """
    if syntax is Syntax.string or syntax is Syntax.oid:
        return normalize_value(value)
    if syntax is Syntax.dn:
        try:
            return normalize_dn(value)
        except InvalidDN as e:
            raise InvalidValue(str(e)) from None
    if syntax is Syntax.integer:
        text = value.strip()
        if not re.fullmatch(r"-?\d{1,40}", text):
            raise InvalidValue(f"invalid integer {value!r}")
        return int(text)
    if syntax is Syntax.time:
        return _parse_time(value)
    # uuidMatch: the forms with and without hyphens and braces are equal.
    try:
        return str(UUID(value.strip()))
    except ValueError:
        raise InvalidValue(f"invalid UUID {value!r}") from None
