"""
Simple Paged Results (RFC 2696).

The server keeps no state between pages. A cookie names the position after
the last entry returned (its sort key) and how many entries the search has
returned so far, and carries an HMAC over those and the encoded search
request, so a cookie only continues the search that produced it and cannot
be forged. Entries added or removed between pages are handled as a cursor
would: later pages continue after the last entry sent.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from idserver.ldap.ber import (
    TAG_INTEGER,
    TAG_OCTET_STRING,
    TAG_SEQUENCE,
    DecodeError,
    encode_integer,
    encode_octet_string,
    encode_tlv,
    read_integer,
    read_tlv,
)
from idserver.ldap.messages import encode_control

__all__ = [
    "PAGED_RESULTS_OID",
    "CookieSigner",
    "InvalidCookie",
    "PageState",
    "decode_paged_control",
    "encode_paged_control",
]

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"

_VERSION = 1
_MAC_SIZE = 16


class InvalidCookie(ValueError):
    """
    A cookie was not issued for this search by this server process.
    """


@dataclass(frozen=True, slots=True)
class PageState:
    """
    Where a paged search continues.

    @ivar after: the sort key of the last entry returned.
    @ivar returned: the number of entries returned by the earlier pages.
    """

    after: str
    returned: int


class CookieSigner:
    """
    Issues and checks paging cookies with a key that lives as long as the
    process; a restart ends the paged searches in progress.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(32)

    def _mac(self, search: bytes, payload: bytes) -> bytes:
        digest = hmac.new(self._key, digestmod=hashlib.sha256)
        digest.update(struct.pack(">I", len(search)))
        digest.update(search)
        digest.update(payload)
        return digest.digest()[:_MAC_SIZE]

    def issue(self, search: bytes, state: PageState) -> bytes:
        """
        Return the cookie that continues C{search} (the encoded search
        request) from C{state}.
        """
        payload = struct.pack(">BI", _VERSION, state.returned) + state.after.encode(
            "utf-8"
        )
        return payload + self._mac(search, payload)

    def read(self, search: bytes, cookie: bytes) -> PageState:
        """
        Check a cookie and return the state it carries.

        @raise InvalidCookie: the cookie is malformed, was issued for
            another search, or by another process.
        """
        if len(cookie) < 5 + _MAC_SIZE or cookie[0] != _VERSION:
            raise InvalidCookie("malformed paged results cookie")
        payload, mac = cookie[:-_MAC_SIZE], cookie[-_MAC_SIZE:]
        if not hmac.compare_digest(mac, self._mac(search, payload)):
            raise InvalidCookie(
                "the paged results cookie does not belong to this search"
            )
        (returned,) = struct.unpack(">I", payload[1:5])
        try:
            after = payload[5:].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidCookie("malformed paged results cookie") from None
        return PageState(after, returned)


def decode_paged_control(value: bytes | None) -> tuple[int, bytes]:
    """
    Decode the value of a paged results control.

    @return: C{(size, cookie)}.
    @raise DecodeError: the value is missing or malformed.
    """
    if value is None:
        raise DecodeError("paged results control without a value")
    end = len(value)
    tag, start, stop = read_tlv(value, 0, end)
    if tag != TAG_SEQUENCE or stop != end:
        raise DecodeError("malformed paged results control")
    tag, s_start, s_stop = read_tlv(value, start, stop)
    if tag != TAG_INTEGER:
        raise DecodeError("malformed paged results size")
    size = read_integer(value, s_start, s_stop)
    tag, c_start, c_stop = read_tlv(value, s_stop, stop)
    if tag != TAG_OCTET_STRING or c_stop != stop or size < 0:
        raise DecodeError("malformed paged results cookie")
    return size, bytes(value[c_start:c_stop])


def encode_paged_control(estimate: int, cookie: bytes) -> bytes:
    """
    Encode the paged results control of a SearchResultDone.

    @param estimate: the estimated total number of entries, or 0 when
        unknown.
    """
    value = encode_tlv(
        TAG_SEQUENCE, encode_integer(estimate) + encode_octet_string(cookie)
    )
    return encode_control(PAGED_RESULTS_OID, value)
