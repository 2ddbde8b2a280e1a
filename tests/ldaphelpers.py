"""
Shared pieces of the LDAP server tests: request encoders, a response
decoder, model objects, and a real SQLite directory with cheap argon2
parameters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred, succeed

from idserver.ldap.access import AccessPolicy
from idserver.ldap.backend import BindIdentity, LDAPBackend
from idserver.ldap.ber import (
    TAG_SEQUENCE,
    encode_boolean,
    encode_enumerated,
    encode_integer,
    encode_octet_string,
    encode_tlv,
    read_integer,
    read_tlv,
)
from idserver.ldap.entries import Snapshot
from idserver.ldap.filters import Filter, encode_filter, parse_filter
from idserver.ldap.messages import LDAPError, ResultCode
from idserver.model import Group, Role, Source, User

__all__ = [
    "CHEAP_ARGON2",
    "Response",
    "StaticBackend",
    "abandon_request",
    "bind_request",
    "compare_request",
    "decode_responses",
    "extended_request",
    "make_group",
    "make_user",
    "open_test_directory",
    "paged_control",
    "search_request",
    "unbind_request",
]

# argon2 parameters that make a hash take well under a millisecond.
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def make_user(username: str, **fields: Any) -> User:
    """
    Build a L{User} value for tests that need no database.
    """
    values: dict[str, Any] = {
        "id": f"uid-{uuid.uuid4()}",
        "username": username,
        "email": f"{username}@example.com",
        "fallback_email": None,
        "display_name": username.capitalize(),
        "role": Role.user,
        "active": True,
        "source": Source.local,
        "external_id": None,
        "totp_enabled": False,
        "email_verified": True,
        "has_password": False,
        "uid_number": 10000,
        "created_at": NOW,
        "updated_at": NOW,
        "password_changed_at": None,
    }
    values.update(fields)
    return User(**values)


def make_group(name: str, members: tuple[User, ...] = (), **fields: Any) -> Group:
    """
    Build a L{Group} value for tests that need no database.
    """
    values: dict[str, Any] = {
        "id": f"gid-{uuid.uuid4()}",
        "name": name,
        "gid_number": 10000,
        "source": Source.local,
        "external_id": None,
        "created_at": NOW,
        "updated_at": NOW,
        "members": tuple(sorted(u.id for u in members)),
        "member_usernames": tuple(sorted(u.username for u in members)),
    }
    values.update(fields)
    return Group(**values)


# Requests


def _message(message_id: int, op: bytes, controls: bytes = b"") -> bytes:
    if controls:
        controls = encode_tlv(0xA0, controls)
    return encode_tlv(TAG_SEQUENCE, encode_integer(message_id) + op + controls)


def control(oid: str, value: bytes | None = None, critical: bool = False) -> bytes:
    """
    Encode one request control.
    """
    body = encode_octet_string(oid)
    if critical:
        body += encode_boolean(True)
    if value is not None:
        body += encode_octet_string(value)
    return encode_tlv(TAG_SEQUENCE, body)


def paged_control(size: int, cookie: bytes = b"", critical: bool = False) -> bytes:
    """
    Encode a Simple Paged Results control (RFC 2696).
    """
    value = encode_tlv(TAG_SEQUENCE, encode_integer(size) + encode_octet_string(cookie))
    return control("1.2.840.113556.1.4.319", value, critical)


def bind_request(
    message_id: int, name: str = "", password: bytes = b"", version: int = 3
) -> bytes:
    """
    Encode a simple bind request.
    """
    op = encode_tlv(
        0x60,
        encode_integer(version)
        + encode_octet_string(name)
        + encode_tlv(0x80, password),
    )
    return _message(message_id, op)


def search_request(
    message_id: int,
    base: str = "",
    filter: str | Filter | bytes = "(objectClass=*)",
    *,
    scope: int = 2,
    attributes: tuple[str, ...] = (),
    size_limit: int = 0,
    time_limit: int = 0,
    types_only: bool = False,
    controls: bytes = b"",
) -> bytes:
    """
    Encode a search request; C{filter} is a string (RFC 4515), a node, or
    an encoded filter.
    """
    if isinstance(filter, bytes):
        encoded_filter = filter
    else:
        node = parse_filter(filter) if isinstance(filter, str) else filter
        encoded_filter = encode_filter(node)
    op = encode_tlv(
        0x63,
        encode_octet_string(base)
        + encode_enumerated(scope)
        + encode_enumerated(0)
        + encode_integer(size_limit)
        + encode_integer(time_limit)
        + encode_boolean(types_only)
        + encoded_filter
        + encode_tlv(
            TAG_SEQUENCE, b"".join(encode_octet_string(a) for a in attributes)
        ),
    )
    return _message(message_id, op, controls)


def compare_request(message_id: int, entry: str, attribute: str, value: str) -> bytes:
    """
    Encode a compare request.
    """
    ava = encode_tlv(
        TAG_SEQUENCE, encode_octet_string(attribute) + encode_octet_string(value)
    )
    return _message(message_id, encode_tlv(0x6E, encode_octet_string(entry) + ava))


def extended_request(
    message_id: int, name: str, value: bytes | None = None, controls: bytes = b""
) -> bytes:
    """
    Encode an extended request.
    """
    body = encode_octet_string(name, 0x80)
    if value is not None:
        body += encode_tlv(0x81, value)
    return _message(message_id, encode_tlv(0x77, body), controls)


def abandon_request(message_id: int, target: int) -> bytes:
    """
    Encode an abandon request.
    """
    return _message(message_id, encode_integer(target, 0x50))


def unbind_request(message_id: int) -> bytes:
    """
    Encode an unbind request.
    """
    return _message(message_id, b"\x42\x00")


def delete_request(message_id: int, dn: str) -> bytes:
    """
    Encode a delete request.
    """
    return _message(message_id, encode_octet_string(dn, 0x4A))


# Responses


@dataclass
class Response:
    """
    One decoded response message.

    @ivar tag: the protocolOp tag.
    @ivar code: the result code, for LDAPResult responses.
    @ivar dn: the objectName of an entry, or the matchedDN of a result.
    @ivar attributes: the attributes of an entry, names as sent.
    @ivar controls: control OID to value.
    @ivar name: the responseName of an extended response.
    @ivar value: the responseValue of an extended response.
    """

    message_id: int
    tag: int
    code: int | None = None
    dn: str = ""
    message: str = ""
    attributes: dict[str, list[str]] = field(default_factory=dict)
    controls: dict[str, bytes | None] = field(default_factory=dict)
    name: str | None = None
    value: bytes | None = None


def decode_responses(data: bytes) -> list[Response]:
    """
    Decode every complete response message in C{data}.
    """
    responses = []
    position = 0
    while position < len(data):
        _, start, stop = read_tlv(data, position, len(data))
        responses.append(_decode_response(data, start, stop))
        position = stop
    return responses


def _decode_response(data: bytes, start: int, stop: int) -> Response:
    _, id_start, id_stop = read_tlv(data, start, stop)
    response = Response(read_integer(data, id_start, id_stop), 0)
    tag, op_start, op_stop = read_tlv(data, id_stop, stop)
    response.tag = tag
    if tag == 0x64:
        _, n_start, n_stop = read_tlv(data, op_start, op_stop)
        response.dn = data[n_start:n_stop].decode("utf-8")
        _, cursor, list_stop = read_tlv(data, n_stop, op_stop)
        while cursor < list_stop:
            _, a_start, cursor = read_tlv(data, cursor, list_stop)
            _, t_start, t_stop = read_tlv(data, a_start, cursor)
            _, v_cursor, v_stop = read_tlv(data, t_stop, cursor)
            values = []
            while v_cursor < v_stop:
                _, s, v_cursor = read_tlv(data, v_cursor, v_stop)
                values.append(data[s:v_cursor].decode("utf-8"))
            response.attributes[data[t_start:t_stop].decode("utf-8")] = values
    else:
        _, c_start, c_stop = read_tlv(data, op_start, op_stop)
        response.code = read_integer(data, c_start, c_stop)
        _, m_start, m_stop = read_tlv(data, c_stop, op_stop)
        response.dn = data[m_start:m_stop].decode("utf-8")
        _, e_start, cursor = read_tlv(data, m_stop, op_stop)
        response.message = data[e_start:cursor].decode("utf-8")
        while cursor < op_stop:
            extra_tag, x_start, cursor = read_tlv(data, cursor, op_stop)
            if extra_tag == 0x8A:
                response.name = data[x_start:cursor].decode("ascii")
            elif extra_tag == 0x8B:
                response.value = bytes(data[x_start:cursor])
    if op_stop < stop:
        _, cursor, controls_stop = read_tlv(data, op_stop, stop)
        while cursor < controls_stop:
            _, c_start, cursor = read_tlv(data, cursor, controls_stop)
            _, o_start, o_stop = read_tlv(data, c_start, cursor)
            value = None
            position = o_stop
            while position < cursor:
                value_tag, v_start, position = read_tlv(data, position, cursor)
                if value_tag == 0x04:
                    value = bytes(data[v_start:position])
            response.controls[data[o_start:o_stop].decode("ascii")] = value
    return response


def paged_cookie(response: Response) -> bytes:
    """
    Return the cookie of the paged results control of a SearchResultDone.
    """
    value = response.controls["1.2.840.113556.1.4.319"]
    assert value is not None
    _, start, stop = read_tlv(value, 0, len(value))
    _, s_start, s_stop = read_tlv(value, start, stop)
    _, c_start, c_stop = read_tlv(value, s_stop, stop)
    return bytes(value[c_start:c_stop])


# A real directory


@dataclass
class TestDirectory:
    """
    A SQLite directory in a temporary directory, with its hasher.
    """

    directory: Any
    hasher: Any
    path: str

    def close(self) -> None:
        self.directory.close()
        self.hasher.stop()


def open_test_directory(reactor: Any, base: str) -> TestDirectory:
    """
    Open a new SQLite directory under the directory C{base} with cheap
    argon2 parameters. Call C{close} when done.
    """
    import os

    from idserver.directory.sqlite import open_directory
    from idserver.passwords import Argon2Hasher

    os.makedirs(base, exist_ok=True)
    hasher = Argon2Hasher(reactor, **CHEAP_ARGON2)
    hasher.start()
    path = os.path.join(base, "idserver.sqlite3")
    directory = open_directory(path, reactor=reactor, hasher=hasher)
    return TestDirectory(directory, hasher, path)


def deferred_result(deferred: Deferred[Any]) -> Any:
    """
    Return the result of a L{Deferred} that has already fired.
    """
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


class StaticBackend(LDAPBackend):
    """
    A backend with a fixed snapshot and policy and a table of bind DNs and
    passwords, so the protocol can be tested without a directory.
    """

    def __init__(
        self,
        snapshot: Snapshot,
        policy: AccessPolicy,
        accounts: dict[str, str] | None = None,
    ) -> None:
        super().__init__(None, lambda: None, suffix=snapshot.suffix)  # type: ignore[arg-type]
        self.fixed_snapshot = snapshot
        self.fixed_policy = policy
        self.accounts = accounts or {}
        self.binds: list[tuple[str, str | None]] = []

    def current_snapshot(self) -> Snapshot | None:
        return self.fixed_snapshot

    def snapshot(self) -> Deferred[Snapshot]:
        return succeed(self.fixed_snapshot)

    def current_policy(self) -> AccessPolicy | None:
        return self.fixed_policy

    def policy(self) -> Deferred[AccessPolicy]:
        return succeed(self.fixed_policy)

    async def bind(
        self, name: str, password: bytes, address: str | None
    ) -> BindIdentity:
        self.binds.append((name, address))
        if self.accounts.get(name) == password.decode("utf-8", "replace"):
            return BindIdentity(name, None)
        raise LDAPError(ResultCode.invalidCredentials, "invalid credentials")


def get_reactor_for_tests() -> Any:
    """
    Return the global reactor, which trial runs.
    """
    from twisted.internet import reactor

    return reactor
