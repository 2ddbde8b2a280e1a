"""
LDAP messages (RFC 4511 §4): decoding requests and encoding responses.

Requests decode into small typed objects. A message whose structure is
wrong raises L{DecodeError}, after which RFC 4511 §4.1.1 has the server
send a notice of disconnection and close the connection. Values that are
well-formed but not acceptable (a bind version other than 3, a search
scope out of range) are left to the operation, which returns a result
code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias

from idserver.ldap.ber import (
    TAG_BOOLEAN,
    TAG_ENUMERATED,
    TAG_INTEGER,
    TAG_OCTET_STRING,
    TAG_SEQUENCE,
    DecodeError,
    encode_boolean,
    encode_enumerated,
    encode_integer,
    encode_octet_string,
    encode_tlv,
    read_boolean,
    read_integer,
    read_tlv,
)
from idserver.ldap.filters import And, Filter, FilterTooComplex, decode_filter

__all__ = [
    "NOTICE_OF_DISCONNECTION",
    "AbandonRequest",
    "BindRequest",
    "CompareRequest",
    "Control",
    "ExtendedRequest",
    "LDAPError",
    "Message",
    "Request",
    "ResultCode",
    "SearchRequest",
    "UnbindRequest",
    "UpdateRequest",
    "decode_message",
    "encode_control",
    "encode_extended_response",
    "encode_message",
    "encode_result",
]

NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"

MAX_MESSAGE_ID = 2**31 - 1


class ResultCode(enum.IntEnum):
    """
    The result codes of RFC 4511 Appendix A that this server sends.
    """

    success = 0
    operationsError = 1
    protocolError = 2
    timeLimitExceeded = 3
    sizeLimitExceeded = 4
    compareFalse = 5
    compareTrue = 6
    authMethodNotSupported = 7
    adminLimitExceeded = 11
    unavailableCriticalExtension = 12
    noSuchAttribute = 16
    undefinedAttributeType = 17
    noSuchObject = 32
    invalidDNSyntax = 34
    invalidCredentials = 49
    insufficientAccessRights = 50
    busy = 51
    unavailable = 52
    unwillingToPerform = 53
    other = 80


class LDAPError(Exception):
    """
    An operation ends with a result code other than success.

    @ivar code: the result code.
    @ivar message: the diagnostic message for the client.
    @ivar matched_dn: the matchedDN of the result (RFC 4511 §4.1.9).
    """

    def __init__(
        self, code: ResultCode, message: str = "", matched_dn: str = ""
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.matched_dn = matched_dn


@dataclass(frozen=True, slots=True)
class Control:
    """
    A request control (RFC 4511 §4.1.11).
    """

    oid: str
    critical: bool
    value: bytes | None


@dataclass(frozen=True, slots=True)
class BindRequest:
    """
    A bind request; C{password} is set for simple binds, C{mechanism} for
    SASL binds.
    """

    version: int
    name: str
    password: bytes | None
    mechanism: str | None

    def __repr__(self) -> str:
        # A password must never reach a log through a repr.
        return f"BindRequest(version={self.version}, name={self.name!r})"


@dataclass(frozen=True, slots=True)
class UnbindRequest:
    pass


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """
    A search request.

    @ivar encoded: the encoded protocolOp, which identifies the request
        when a paged search continues.
    @ivar rejection: why the server rejects the search without running it
        (a filter over the complexity limits), or C{None}.
    """

    base: str
    scope: int
    deref_aliases: int
    size_limit: int
    time_limit: int
    types_only: bool
    filter: Filter
    attributes: tuple[str, ...]
    encoded: bytes = field(repr=False, default=b"")
    rejection: str | None = None


@dataclass(frozen=True, slots=True)
class CompareRequest:
    entry: str
    attribute: str
    value: str


@dataclass(frozen=True, slots=True)
class AbandonRequest:
    message_id: int


@dataclass(frozen=True, slots=True)
class ExtendedRequest:
    name: str
    value: bytes | None


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """
    A modify, add, delete or modify DN request. This server rejects them
    all with unwillingToPerform, so only the response tag is kept.
    """

    response_tag: int


Request: TypeAlias = (
    BindRequest
    | UnbindRequest
    | SearchRequest
    | CompareRequest
    | AbandonRequest
    | ExtendedRequest
    | UpdateRequest
)


@dataclass(frozen=True, slots=True)
class Message:
    """
    One request message.
    """

    message_id: int
    request: Request
    controls: tuple[Control, ...] = ()


# Response tags of the operations.
BIND_RESPONSE = 0x61
SEARCH_RESULT_DONE = 0x65
COMPARE_RESPONSE = 0x6F
EXTENDED_RESPONSE = 0x78

# Request tag to the response tag of the update operations.
_UPDATES = {
    0x66: 0x67,  # modify
    0x68: 0x69,  # add
    0x4A: 0x6B,  # delete
    0x6C: 0x6D,  # modify DN
}


def _string(data: bytes, start: int, end: int) -> str:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("LDAPString is not UTF-8") from None


def _ascii(data: bytes, start: int, end: int) -> str:
    try:
        return data[start:end].decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("identifier is not ASCII") from None


def _expect(data: bytes, position: int, end: int, tag: int) -> tuple[int, int]:
    found, start, stop = read_tlv(data, position, end)
    if found != tag:
        raise DecodeError(f"expected tag 0x{tag:02x}, found 0x{found:02x}")
    return start, stop


def decode_message(data: bytes) -> Message:
    """
    Decode one complete LDAPMessage.

    @raise DecodeError: the message is malformed.
    """
    end = len(data)
    start, stop = _expect(data, 0, end, TAG_SEQUENCE)
    if stop != end:
        raise DecodeError("bytes after the message")
    id_start, id_stop = _expect(data, start, stop, TAG_INTEGER)
    message_id = read_integer(data, id_start, id_stop)
    if not 0 < message_id <= MAX_MESSAGE_ID:
        # Message ID 0 belongs to unsolicited notifications (RFC 4511
        # §4.4).
        raise DecodeError(f"invalid message ID {message_id}")

    op_tag, op_start, op_stop = read_tlv(data, id_stop, stop)
    request = _decode_request(data, op_tag, op_start, op_stop, id_stop)

    controls: tuple[Control, ...] = ()
    if op_stop < stop:
        controls_start, controls_stop = _expect(data, op_stop, stop, 0xA0)
        if controls_stop != stop:
            raise DecodeError("bytes after the controls")
        controls = _decode_controls(data, controls_start, controls_stop)
    return Message(message_id, request, controls)


def _decode_request(
    data: bytes, tag: int, start: int, stop: int, op_position: int
) -> Request:
    if tag == 0x63:
        return _decode_search(data, start, stop, op_position)
    if tag == 0x60:
        return _decode_bind(data, start, stop)
    if tag == 0x42:
        if stop != start:
            raise DecodeError("unbind request with contents")
        return UnbindRequest()
    if tag == 0x50:
        return AbandonRequest(read_integer(data, start, stop))
    if tag == 0x77:
        return _decode_extended(data, start, stop)
    if tag == 0x6E:
        return _decode_compare(data, start, stop)
    if tag in _UPDATES:
        return UpdateRequest(_UPDATES[tag])
    raise DecodeError(f"unknown operation tag 0x{tag:02x}")


def _decode_bind(data: bytes, start: int, stop: int) -> BindRequest:
    v_start, v_stop = _expect(data, start, stop, TAG_INTEGER)
    version = read_integer(data, v_start, v_stop)
    n_start, n_stop = _expect(data, v_stop, stop, TAG_OCTET_STRING)
    name = _string(data, n_start, n_stop)
    tag, a_start, a_stop = read_tlv(data, n_stop, stop)
    if a_stop != stop:
        raise DecodeError("bytes after the bind credentials")
    if tag == 0x80:
        return BindRequest(version, name, bytes(data[a_start:a_stop]), None)
    if tag == 0xA3:
        m_start, m_stop = _expect(data, a_start, a_stop, TAG_OCTET_STRING)
        return BindRequest(version, name, None, _ascii(data, m_start, m_stop))
    raise DecodeError(f"unknown authentication choice 0x{tag:02x}")


def _decode_search(
    data: bytes, start: int, stop: int, op_position: int
) -> SearchRequest:
    b_start, position = _expect(data, start, stop, TAG_OCTET_STRING)
    base = _string(data, b_start, position)
    values = []
    for tag in (TAG_ENUMERATED, TAG_ENUMERATED, TAG_INTEGER, TAG_INTEGER):
        value_start, position = _expect(data, position, stop, tag)
        values.append(read_integer(data, value_start, position))
    scope, deref_aliases, size_limit, time_limit = values
    t_start, position = _expect(data, position, stop, TAG_BOOLEAN)
    types_only = read_boolean(data, t_start, position)
    rejection = None
    try:
        search_filter, position = decode_filter(data, position, stop)
    except FilterTooComplex as e:
        # The request is framed correctly, so only the operation fails;
        # the rest of the filter is skipped unread.
        _, _, position = read_tlv(data, position, stop)
        search_filter = And(())
        rejection = str(e)
    list_start, list_stop = _expect(data, position, stop, TAG_SEQUENCE)
    if list_stop != stop:
        raise DecodeError("bytes after the attribute list")
    attributes = []
    cursor = list_start
    while cursor < list_stop:
        a_start, cursor = _expect(data, cursor, list_stop, TAG_OCTET_STRING)
        attributes.append(_string(data, a_start, cursor))
    return SearchRequest(
        base,
        scope,
        deref_aliases,
        size_limit,
        time_limit,
        types_only,
        search_filter,
        tuple(attributes),
        bytes(data[op_position:stop]),
        rejection,
    )


def _decode_compare(data: bytes, start: int, stop: int) -> CompareRequest:
    e_start, e_stop = _expect(data, start, stop, TAG_OCTET_STRING)
    ava_start, ava_stop = _expect(data, e_stop, stop, TAG_SEQUENCE)
    a_start, a_stop = _expect(data, ava_start, ava_stop, TAG_OCTET_STRING)
    v_start, v_stop = _expect(data, a_stop, ava_stop, TAG_OCTET_STRING)
    if v_stop != ava_stop or ava_stop != stop:
        raise DecodeError("malformed compare request")
    return CompareRequest(
        _string(data, e_start, e_stop),
        _ascii(data, a_start, a_stop),
        data[v_start:v_stop].decode("utf-8", "surrogateescape"),
    )


def _decode_extended(data: bytes, start: int, stop: int) -> ExtendedRequest:
    n_start, position = _expect(data, start, stop, 0x80)
    name = _ascii(data, n_start, position)
    value = None
    if position < stop:
        v_start, position = _expect(data, position, stop, 0x81)
        value = bytes(data[v_start:position])
    if position != stop:
        raise DecodeError("bytes after the extended request value")
    return ExtendedRequest(name, value)


def _decode_controls(data: bytes, start: int, stop: int) -> tuple[Control, ...]:
    controls = []
    cursor = start
    while cursor < stop:
        c_start, cursor = _expect(data, cursor, stop, TAG_SEQUENCE)
        o_start, position = _expect(data, c_start, cursor, TAG_OCTET_STRING)
        oid = _ascii(data, o_start, position)
        critical = False
        value = None
        if position < cursor:
            tag, v_start, v_stop = read_tlv(data, position, cursor)
            if tag == TAG_BOOLEAN:
                critical = read_boolean(data, v_start, v_stop)
                position = v_stop
                if position < cursor:
                    tag, v_start, v_stop = read_tlv(data, position, cursor)
                else:
                    tag = -1
            if tag == TAG_OCTET_STRING:
                value = bytes(data[v_start:v_stop])
                position = v_stop
            elif tag != -1:
                raise DecodeError(f"unexpected tag 0x{tag:02x} in a control")
        if position != cursor:
            raise DecodeError("bytes after a control")
        controls.append(Control(oid, critical, value))
    return tuple(controls)


# Responses


def encode_message(message_id: int, op: bytes, controls: bytes = b"") -> bytes:
    """
    Wrap an encoded protocolOp, and optionally encoded controls, into an
    LDAPMessage.
    """
    if controls:
        controls = encode_tlv(0xA0, controls)
    return encode_tlv(TAG_SEQUENCE, encode_integer(message_id) + op + controls)


def encode_result(
    tag: int,
    code: ResultCode | int,
    message: str = "",
    matched_dn: str = "",
    extra: bytes = b"",
) -> bytes:
    """
    Encode an LDAPResult protocolOp with the given response tag. C{extra}
    contains the encoded fields that follow the result in some responses.
    """
    return encode_tlv(
        tag,
        encode_enumerated(int(code))
        + encode_octet_string(matched_dn)
        + encode_octet_string(message)
        + extra,
    )


def encode_extended_response(
    code: ResultCode,
    message: str = "",
    name: str | None = None,
    value: bytes | None = None,
) -> bytes:
    """
    Encode an ExtendedResponse protocolOp (RFC 4511 §4.12).
    """
    extra = b""
    if name is not None:
        extra += encode_octet_string(name, 0x8A)
    if value is not None:
        extra += encode_tlv(0x8B, value)
    return encode_result(EXTENDED_RESPONSE, code, message, extra=extra)


def encode_control(
    oid: str, value: bytes | None = None, critical: bool = False
) -> bytes:
    """
    Encode one Control.
    """
    body = encode_octet_string(oid)
    if critical:
        body += encode_boolean(True)
    if value is not None:
        body += encode_octet_string(value)
    return encode_tlv(TAG_SEQUENCE, body)
