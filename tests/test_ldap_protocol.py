"""
Tests for L{idserver.ldap.server}, the wire protocol, driven through
L{StringTransport} with a fixed backend and a fake clock: framing, access
checks, operations, flow control, limits on bad input, and a hypothesis
test that feeds random and mutated messages.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides

from idserver.ldap import server, service
from idserver.ldap.access import AccessPolicy, parse_allowlist
from idserver.ldap.ber import encode_integer, encode_tlv
from idserver.ldap.entries import Snapshot
from idserver.ldap.filters import Present, encode_filter
from idserver.ldap.server import (
    MAX_ANONYMOUS_MESSAGE_SIZE,
    MAX_QUEUED_REQUESTS,
    LDAPServerFactory,
    LDAPServerProtocol,
)

from .ldaphelpers import (
    Response,
    StaticBackend,
    abandon_request,
    bind_request,
    compare_request,
    control,
    decode_responses,
    delete_request,
    extended_request,
    make_group,
    make_user,
    paged_control,
    paged_cookie,
    search_request,
    unbind_request,
)

SUFFIX = "dc=cloudron"
USERS = "ou=users,dc=cloudron"
ADMIN = "cn=admin,ou=system,dc=cloudron"
SECRET = "admin secret"
NOTICE = "1.3.6.1.4.1.1466.20036"

OPEN_POLICY = AccessPolicy(
    enabled=True, allowlist=parse_allowlist(["127.0.0.1", "::1", "10.1.0.0/16"])
)


class RecordingTLSTransport(StringTransport):
    """
    A L{StringTransport} that records calls to C{startTLS}.
    """

    tls_context: Any = None

    def startTLS(self, context: Any) -> None:
        self.tls_context = context


def build_snapshot(count: int = 5) -> Snapshot:
    users = [make_user(f"user{i:04d}", uid_number=10000 + i) for i in range(count)]
    return Snapshot(SUFFIX, users, [make_group("admins", tuple(users[:2]))], revision=1)


class ProtocolTestBase(SynchronousTestCase):
    """
    Connects protocols to string transports over a fixed backend.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = StaticBackend(build_snapshot(), OPEN_POLICY, {ADMIN: SECRET})
        self.factory = self.make_factory()

    def make_factory(self, **options: Any) -> LDAPServerFactory:
        options.setdefault("starttls", object())
        return LDAPServerFactory(self.backend, self.clock, **options)

    def connect(
        self,
        host: str = "127.0.0.1",
        factory: LDAPServerFactory | None = None,
        transport: StringTransport | None = None,
    ) -> tuple[LDAPServerProtocol, StringTransport]:
        factory = factory or self.factory
        address: Any = (
            IPv6Address("TCP", host, 4000)
            if ":" in host
            else IPv4Address("TCP", host, 4000)
        )
        protocol = factory.buildProtocol(address)
        transport = transport or StringTransport(peerAddress=address, lenient=True)
        protocol.makeConnection(transport)
        return protocol, transport

    def flush(self) -> None:
        """
        Run the calls scheduled for now, such as the next steps of searches.
        """
        now = self.clock.seconds()
        while any(call.getTime() <= now for call in self.clock.getDelayedCalls()):
            self.clock.advance(0)

    def exchange(
        self, protocol: LDAPServerProtocol, transport: StringTransport, *data: bytes
    ) -> list[Response]:
        transport.clear()
        for chunk in data:
            protocol.dataReceived(chunk)
        return decode_responses(transport.value())

    def bound(self) -> tuple[LDAPServerProtocol, StringTransport]:
        protocol, transport = self.connect()
        [response] = self.exchange(
            protocol, transport, bind_request(1, ADMIN, SECRET.encode())
        )
        self.assertEqual(response.code, 0)
        return protocol, transport

    def assertDisconnected(self, transport: StringTransport, code: int = 2) -> None:
        """
        The last message is a notice of disconnection with C{code}, and the
        connection is closing.
        """
        responses = decode_responses(transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertEqual(responses[-1].message_id, 0)
        self.assertEqual(responses[-1].name, NOTICE)
        self.assertEqual(responses[-1].code, code)


class AccessTests(ProtocolTestBase):
    """
    Tests for the checks made when a connection opens.
    """

    def test_allowed(self) -> None:
        """
        An address on the allowlist is served.
        """
        protocol, transport = self.connect("10.1.2.3")
        responses = self.exchange(protocol, transport, search_request(1, "", scope=0))
        self.assertEqual(responses[-1].code, 0)
        self.assertFalse(transport.disconnecting)

    def test_not_allowed(self) -> None:
        """
        Other addresses are disconnected at once, without a response.
        """
        for host in ["10.2.0.1", "192.168.1.1", "fe80::1"]:
            with self.subTest(host=host):
                protocol, transport = self.connect(host)
                self.assertTrue(transport.disconnected)
                protocol.dataReceived(search_request(1, "", scope=0))
                self.assertEqual(transport.value(), b"")

    def test_mapped_ipv4(self) -> None:
        """
        An IPv4-mapped IPv6 address counts as its IPv4 address.
        """
        _, transport = self.connect("::ffff:10.1.9.9")
        self.assertFalse(transport.disconnected)
        _, transport = self.connect("::ffff:10.2.9.9")
        self.assertTrue(transport.disconnected)

    def test_disabled(self) -> None:
        """
        While the server is disabled, every connection is closed at once.
        """
        self.backend.fixed_policy = AccessPolicy(
            enabled=False, allowlist=OPEN_POLICY.allowlist
        )
        _, transport = self.connect("127.0.0.1")
        self.assertTrue(transport.disconnected)

    def test_disabled_while_connected(self) -> None:
        """
        Disabling the server, or removing an address from the allowlist,
        ends open connections at their next request with a notice of
        disconnection.
        """
        protocol, transport = self.connect("10.1.2.3")
        self.backend.fixed_policy = AccessPolicy(
            enabled=True, allowlist=parse_allowlist(["127.0.0.1"])
        )
        protocol.dataReceived(search_request(1, "", scope=0))
        self.assertDisconnected(transport, code=52)

        protocol, transport = self.connect("127.0.0.1")
        self.backend.fixed_policy = AccessPolicy(
            enabled=False, allowlist=OPEN_POLICY.allowlist
        )
        protocol.dataReceived(search_request(1, "", scope=0))
        self.assertDisconnected(transport, code=52)

    def test_abandoned_while_settings_load(self) -> None:
        """
        A search abandoned while the settings are being read again gets no
        response, and the next request is answered once.
        """
        protocol, transport = self.bound()
        waiting: list[Deferred[AccessPolicy]] = []

        def policy() -> Deferred[AccessPolicy]:
            waiting.append(Deferred())
            return waiting[-1]

        self.patch(self.backend, "current_policy", lambda: None)
        self.patch(self.backend, "policy", policy)
        responses = self.exchange(
            protocol,
            transport,
            search_request(2, USERS, "(objectClass=user)"),
            abandon_request(3, 2),
            search_request(4, "", scope=0),
        )
        self.assertEqual(responses, [])
        for loading in waiting:
            loading.callback(OPEN_POLICY)
        responses = decode_responses(transport.value())
        self.assertEqual(
            [(r.message_id, r.tag) for r in responses], [(4, 0x64), (4, 0x65)]
        )

    def test_connection_limit(self) -> None:
        """
        Past the connection limit, the connection idle the longest is
        closed for the new one.
        """
        factory = self.make_factory(max_connections=2)
        first, first_transport = self.connect(factory=factory)
        self.clock.advance(5)
        second, second_transport = self.connect(factory=factory)
        self.clock.advance(5)
        first.dataReceived(search_request(1, "", scope=0))
        third, third_transport = self.connect(factory=factory)
        self.assertFalse(first_transport.disconnected)
        self.assertTrue(second_transport.disconnected)
        self.assertFalse(third_transport.disconnected)

    def test_refusals_logged(self) -> None:
        """
        Refused connections are logged with address and reason; repeats
        from one address are logged every hundredth time.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for _ in range(150):
            self.connect("10.2.0.1")
        logged = [e for e in events if e.get("address") == "10.2.0.1"]
        self.assertEqual([e["count"] for e in logged], [1, 100])
        self.assertEqual(logged[0]["reason"], "the address is not on the allowlist")

    def test_connection_limit_from_file_limit(self) -> None:
        """
        The listeners together keep at most half of the open-file limit.
        """
        self.patch(service.resource, "getrlimit", lambda kind: (1024, 4096))
        self.assertEqual(service.connection_limit(2), 1024)
        self.patch(service.resource, "getrlimit", lambda kind: (1024, 10**9))
        self.assertEqual(service.connection_limit(1), service.MAX_CONNECTIONS)
        infinity = service.resource.RLIM_INFINITY
        self.patch(service.resource, "getrlimit", lambda kind: (infinity, infinity))
        self.assertEqual(service.connection_limit(1), service.MAX_CONNECTIONS)

    def test_idle_timeout(self) -> None:
        """
        A connection without traffic for the idle timeout is closed; traffic
        keeps it open.
        """
        factory = self.make_factory(idle_timeout=60)
        busy, busy_transport = self.connect(factory=factory)
        idle, idle_transport = self.connect(factory=factory)
        for _ in range(5):
            self.clock.advance(20)
            busy.dataReceived(search_request(1, "", scope=0))
        self.assertTrue(idle_transport.disconnected)
        self.assertFalse(busy_transport.disconnected)


class BindTests(ProtocolTestBase):
    """
    Tests for bind requests.
    """

    def test_anonymous(self) -> None:
        """
        An anonymous bind succeeds and may read only the root DSE.
        """
        protocol, transport = self.connect()
        responses = self.exchange(
            protocol,
            transport,
            bind_request(1),
            search_request(2, "", scope=0),
            search_request(3, USERS),
            compare_request(4, USERS, "ou", "users"),
        )
        self.assertEqual([r.code for r in responses if r.tag != 0x64], [0, 0, 50, 50])

    def test_codes(self) -> None:
        """
        Each kind of failed bind gets its result code.
        """
        protocol, transport = self.connect()
        cases = [
            (bind_request(1, ADMIN, b"wrong"), 49),
            (bind_request(2, ADMIN, b""), 53),
            (bind_request(3, "", b"password"), 49),
            (bind_request(4, ADMIN, SECRET.encode(), version=2), 2),
            (bind_request(5, ADMIN, SECRET.encode()), 0),
        ]
        for data, code in cases:
            [response] = self.exchange(protocol, transport, data)
            self.assertEqual((response.tag, response.code), (0x61, code))

    def test_sasl(self) -> None:
        """
        SASL binds get authMethodNotSupported.
        """
        protocol, transport = self.connect()
        sasl = encode_tlv(
            0x60,
            encode_integer(3) + b"\x04\x00" + encode_tlv(0xA3, b"\x04\x08EXTERNAL"),
        )
        [response] = self.exchange(
            protocol, transport, encode_tlv(0x30, encode_integer(1) + sasl)
        )
        self.assertEqual(response.code, 7)

    def test_failed_bind_is_anonymous(self) -> None:
        """
        A failed bind leaves the connection anonymous (RFC 4511 §4.2.1).
        """
        protocol, transport = self.bound()
        responses = self.exchange(
            protocol,
            transport,
            bind_request(2, ADMIN, b"wrong"),
            search_request(3, USERS),
        )
        self.assertEqual([r.code for r in responses], [49, 50])

    def test_address_passed(self) -> None:
        """
        The backend gets the client address with the bind.
        """
        protocol, transport = self.connect("10.1.0.7")
        self.exchange(protocol, transport, bind_request(1, ADMIN, b"x"))
        self.assertEqual(self.backend.binds, [(ADMIN, "10.1.0.7")])


class OperationTests(ProtocolTestBase):
    """
    Tests for searches, compares, extended operations and writes.
    """

    def test_search(self) -> None:
        """
        A bound session searches the tree.
        """
        protocol, transport = self.bound()
        responses = self.exchange(
            protocol, transport, search_request(2, USERS, "(username=user0001)")
        )
        self.assertEqual([r.tag for r in responses], [0x64, 0x65])
        self.assertEqual(responses[0].attributes["username"], ["user0001"])

    def test_pipelined(self) -> None:
        """
        Requests sent together get their responses in order, also when
        split at odd places.
        """
        protocol, transport = self.bound()
        data = b"".join(
            search_request(i, USERS, f"(username=user000{i})") for i in range(2, 5)
        )
        responses = self.exchange(
            protocol, transport, *[data[i : i + 7] for i in range(0, len(data), 7)]
        )
        self.assertEqual([r.message_id for r in responses], [2, 2, 3, 3, 4, 4])

    def test_writes_refused(self) -> None:
        """
        Modify, add, delete and modify DN requests get unwillingToPerform
        with their own response types.
        """
        protocol, transport = self.bound()
        requests = [
            encode_tlv(
                0x30, encode_integer(10) + encode_tlv(0x66, b"\x04\x00\x30\x00")
            ),
            encode_tlv(
                0x30, encode_integer(11) + encode_tlv(0x68, b"\x04\x00\x30\x00")
            ),
            delete_request(12, f"cn=x,{USERS}"),
            encode_tlv(
                0x30,
                encode_integer(13) + encode_tlv(0x6C, b"\x04\x00\x04\x00\x01\x01\xff"),
            ),
        ]
        responses = self.exchange(protocol, transport, *requests)
        self.assertEqual(
            [(r.tag, r.code) for r in responses],
            [(0x67, 53), (0x69, 53), (0x6B, 53), (0x6D, 53)],
        )

    def test_compare(self) -> None:
        """
        Compare returns compareTrue or compareFalse.
        """
        protocol, transport = self.bound()
        responses = self.exchange(
            protocol,
            transport,
            compare_request(2, USERS, "ou", "USERS"),
            compare_request(3, USERS, "ou", "groups"),
            compare_request(4, f"ou=x,{SUFFIX}", "ou", "x"),
        )
        self.assertEqual([r.code for r in responses], [6, 5, 32])
        self.assertEqual(responses[2].dn, SUFFIX)

    def test_critical_controls(self) -> None:
        """
        An unknown critical control gets unavailableCriticalExtension; an
        unknown non-critical one is ignored; paged results is accepted on
        searches only.
        """
        protocol, transport = self.bound()
        responses = self.exchange(
            protocol,
            transport,
            search_request(2, "", scope=0, controls=control("1.2.3.4", critical=True)),
            search_request(3, "", scope=0, controls=control("1.2.3.4")),
            search_request(4, "", scope=0, controls=paged_control(10, critical=True)),
            extended_request(
                5, "1.3.6.1.4.1.4203.1.11.3", controls=paged_control(10, critical=True)
            ),
        )
        done = [r for r in responses if r.tag != 0x64]
        self.assertEqual([r.code for r in done], [12, 0, 0, 12])

    def test_who_am_i(self) -> None:
        """
        Who am I? returns the bound DN, empty when anonymous, without a
        response name (RFC 4532).
        """
        protocol, transport = self.connect()
        [anonymous] = self.exchange(
            protocol, transport, extended_request(1, "1.3.6.1.4.1.4203.1.11.3")
        )
        self.assertEqual(
            (anonymous.code, anonymous.name, anonymous.value), (0, None, b"")
        )
        self.exchange(protocol, transport, bind_request(2, ADMIN, SECRET.encode()))
        [bound] = self.exchange(
            protocol, transport, extended_request(3, "1.3.6.1.4.1.4203.1.11.3")
        )
        self.assertEqual(bound.value, f"dn:{ADMIN}".encode())

    def test_unknown_extended(self) -> None:
        """
        An unknown extended operation is a protocolError without a
        response name; password changes are refused.
        """
        protocol, transport = self.connect()
        responses = self.exchange(
            protocol,
            transport,
            extended_request(1, "1.2.3.4.5"),
            extended_request(2, "1.3.6.1.4.1.4203.1.11.1", b"\x30\x00"),
        )
        self.assertEqual([(r.code, r.name) for r in responses], [(2, None), (53, None)])

    def test_starttls(self) -> None:
        """
        StartTLS returns success with its name and then starts TLS.
        """
        transport = RecordingTLSTransport(lenient=True)
        protocol, _ = self.connect(transport=transport)
        [response] = self.exchange(
            protocol, transport, extended_request(1, "1.3.6.1.4.1.1466.20037")
        )
        self.assertEqual((response.code, response.name), (0, "1.3.6.1.4.1.1466.20037"))
        self.assertIs(transport.tls_context, self.factory.starttls)

    def test_starttls_refused(self) -> None:
        """
        StartTLS is a protocolError where TLS is not offered and an
        operationsError when TLS is active or requests are pending.
        """
        factory = self.make_factory(starttls=None)
        protocol, transport = self.connect(factory=factory)
        [response] = self.exchange(
            protocol, transport, extended_request(1, "1.3.6.1.4.1.1466.20037")
        )
        self.assertEqual(response.code, 2)

        transport = RecordingTLSTransport(lenient=True)
        directlyProvides(transport, ISSLTransport)
        protocol, _ = self.connect(transport=transport)
        [response] = self.exchange(
            protocol, transport, extended_request(1, "1.3.6.1.4.1.1466.20037")
        )
        self.assertEqual(response.code, 1)
        self.assertIsNone(transport.tls_context)

        transport = RecordingTLSTransport(lenient=True)
        protocol, _ = self.connect(transport=transport)
        responses = self.exchange(
            protocol,
            transport,
            extended_request(1, "1.3.6.1.4.1.1466.20037")
            + search_request(2, "", scope=0),
        )
        self.assertEqual(responses[0].code, 1)
        self.assertIsNone(transport.tls_context)

    def test_root_dse_lists_starttls(self) -> None:
        """
        The root DSE lists StartTLS only where it is offered.
        """
        for starttls, expected in [(object(), True), (None, False)]:
            protocol, transport = self.connect(
                factory=self.make_factory(starttls=starttls)
            )
            [entry, _] = self.exchange(
                protocol, transport, search_request(1, "", scope=0)
            )
            self.assertEqual(
                "1.3.6.1.4.1.1466.20037" in entry.attributes["supportedExtension"],
                expected,
            )

    def test_unbind(self) -> None:
        """
        Unbind closes the connection without a response.
        """
        protocol, transport = self.connect()
        responses = self.exchange(
            protocol, transport, unbind_request(1), search_request(2, "", scope=0)
        )
        self.assertEqual(responses, [])
        self.assertTrue(transport.disconnecting)

    def test_paging(self) -> None:
        """
        Paged searches over the wire return cookies that continue them.
        """
        self.backend.fixed_snapshot = build_snapshot(count=25)
        protocol, transport = self.bound()
        cookie = b""
        seen: list[str] = []
        for message_id in range(2, 20):
            responses = self.exchange(
                protocol,
                transport,
                search_request(
                    message_id,
                    USERS,
                    "(objectClass=user)",
                    controls=paged_control(10, cookie),
                ),
            )
            seen.extend(r.dn for r in responses if r.tag == 0x64)
            cookie = paged_cookie(responses[-1])
            if not cookie:
                break
        self.assertEqual(len(seen), 25)
        self.assertEqual(len(set(seen)), 25)


class FlowControlTests(ProtocolTestBase):
    """
    Tests for slow readers, abandon and the request queue.
    """

    def setUp(self) -> None:
        super().setUp()
        self.backend.fixed_snapshot = build_snapshot(count=600)
        self.patch(server, "STEPS_PER_TURN", 1)

    def test_pause_and_resume(self) -> None:
        """
        While the transport is paused, a search stops writing and the
        connection stops reading; it resumes where it stopped.
        """
        protocol, transport = self.bound()
        transport.clear()
        protocol.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        protocol.dataReceived(
            search_request(2, USERS, "(objectClass=user)", size_limit=600)
        )
        self.clock.advance(0)
        self.assertEqual(transport.value(), b"")
        protocol.resumeProducing()
        self.flush()
        responses = decode_responses(transport.value())
        self.assertEqual(len(responses), 601)
        self.assertEqual(responses[-1].code, 0)
        self.assertEqual(transport.producerState, "producing")

    def test_yields_between_steps(self) -> None:
        """
        A long search writes part of its results per reactor turn, so other
        connections are served meanwhile.
        """
        protocol, transport = self.bound()
        transport.clear()
        protocol.dataReceived(
            search_request(2, USERS, "(objectClass=user)", size_limit=600)
        )
        first = len(decode_responses(transport.value()))
        self.assertLess(first, 601)
        self.flush()
        self.assertEqual(len(decode_responses(transport.value())), 601)

    def test_abandon(self) -> None:
        """
        Abandoning a search in progress stops its results and it gets no
        SearchResultDone; the next request is answered.
        """
        protocol, transport = self.bound()
        transport.clear()
        protocol.pauseProducing()
        protocol.dataReceived(
            search_request(2, USERS, "(objectClass=user)", size_limit=600)
        )
        protocol.resumeProducing()
        protocol.pauseProducing()
        protocol.dataReceived(abandon_request(3, 2) + search_request(4, "", scope=0))
        protocol.resumeProducing()
        self.flush()
        responses = decode_responses(transport.value())
        self.assertNotIn((2, 0x65), [(r.message_id, r.tag) for r in responses])
        self.assertEqual(
            [(r.message_id, r.tag) for r in responses[-2:]], [(4, 0x64), (4, 0x65)]
        )

    def test_queue_limit(self) -> None:
        """
        A client that sends requests without reading the answers is no
        longer read from once its queue is full.
        """
        protocol, transport = self.bound()
        protocol.pauseProducing()
        data = b"".join(
            search_request(i, "", scope=0)
            for i in range(2, 2 + 3 * MAX_QUEUED_REQUESTS)
        )
        protocol.dataReceived(data)
        self.assertLessEqual(len(protocol._queue), MAX_QUEUED_REQUESTS)
        self.assertEqual(transport.producerState, "paused")
        transport.clear()
        protocol.resumeProducing()
        self.flush()
        done = [r for r in decode_responses(transport.value()) if r.tag == 0x65]
        self.assertEqual(len(done), 3 * MAX_QUEUED_REQUESTS)


class BadInputTests(ProtocolTestBase):
    """
    Tests for malformed and hostile input.
    """

    def test_garbage(self) -> None:
        """
        Bytes that are not an LDAP message end the connection with a
        notice of disconnection.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertDisconnected(transport)

    def test_malformed_message(self) -> None:
        """
        A framed message with a malformed body ends the connection.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(encode_tlv(0x30, encode_integer(1) + b"\x63\x02\x04\x00"))
        self.assertDisconnected(transport)

    def test_absurd_length(self) -> None:
        """
        A length of gigabytes is rejected at once, before any body arrives.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"\x30\x84\x7f\xff\xff\xff")
        self.assertDisconnected(transport)

    def test_message_too_large(self) -> None:
        """
        A message over the configured maximum ends the connection.
        """
        factory = self.make_factory(max_message_size=2048)
        protocol, transport = self.connect(factory=factory)
        protocol.dataReceived(search_request(1, "", "(cn=%s)" % ("x" * 3000), scope=0))
        self.assertDisconnected(transport)

    def test_deep_filter(self) -> None:
        """
        A filter nested thousands deep or with thousands of items fails
        with adminLimitExceeded, and the connection goes on.
        """
        protocol, transport = self.bound()
        deep = encode_filter(Present("cn"))
        for _ in range(5000):
            deep = encode_tlv(0xA2, deep)
        wide = encode_tlv(0xA1, encode_filter(Present("cn")) * 5000)
        responses = self.exchange(
            protocol,
            transport,
            search_request(2, USERS, deep),
            search_request(3, USERS, wide),
            search_request(4, "", scope=0),
        )
        self.assertEqual(
            [(r.message_id, r.tag, r.code) for r in responses],
            [(2, 0x65, 11), (3, 0x65, 11), (4, 0x64, None), (4, 0x65, 0)],
        )
        self.assertIn("nested deeper than 64", responses[0].message)
        self.assertIn("more than 1024 items", responses[1].message)
        self.assertFalse(transport.disconnecting)

    def test_deep_filter_malformed(self) -> None:
        """
        A search with a filter over the limits is still decoded to its end:
        a malformed attribute list after it ends the connection.
        """
        protocol, transport = self.bound()
        deep = encode_filter(Present("cn"))
        for _ in range(100):
            deep = encode_tlv(0xA2, deep)
        valid = search_request(2, USERS, deep)
        # The attribute list is the last element: an empty SEQUENCE.
        self.assertTrue(valid.endswith(b"\x30\x00"))
        broken = valid[:-2] + b"\x04\x00"
        protocol.dataReceived(broken)
        self.assertDisconnected(transport)

    def test_buffer_bounded(self) -> None:
        """
        A message that never completes keeps at most the maximum message
        size in memory.
        """
        factory = self.make_factory(max_message_size=4096)
        protocol, transport = self.connect(factory=factory)
        protocol.dataReceived(b"\x30\x82\x0f\xff")
        for _ in range(100):
            protocol.dataReceived(b"\x00" * 1000)
        self.assertDisconnected(transport)
        self.assertLessEqual(len(protocol._buffer), 4096)

    def test_queued_bytes_bounded(self) -> None:
        """
        Behind a stalled search, a connection queues requests only up to
        the maximum message size in bytes, then stops reading; every
        request is answered once the client reads again.
        """
        factory = self.make_factory(max_message_size=4096)
        protocol, transport = self.connect(factory=factory)
        protocol.dataReceived(bind_request(1, ADMIN, SECRET.encode()))
        protocol.pauseProducing()
        large = [
            search_request(i, "", scope=0, attributes=("x" * 2900,))
            for i in range(3, 13)
        ]
        protocol.dataReceived(search_request(2, USERS) + b"".join(large))

        self.assertEqual(len(protocol._queue), 2)
        self.assertLessEqual(protocol._queued_bytes, 2 * len(large[0]))
        self.assertEqual(transport.producerState, "paused")

        transport.clear()
        protocol.resumeProducing()
        self.flush()
        done = [
            r.message_id for r in decode_responses(transport.value()) if r.tag == 0x65
        ]
        self.assertEqual(done, list(range(2, 13)))

    def test_unbound_message_limit(self) -> None:
        """
        A connection that is neither bound nor binding may send requests of
        at most 64 KiB; once bound, or behind its bind request, it may send
        up to the configured maximum.
        """
        large = search_request(
            2, "", scope=0, attributes=("x" * MAX_ANONYMOUS_MESSAGE_SIZE,)
        )
        protocol, transport = self.connect()
        protocol.dataReceived(large)
        self.assertDisconnected(transport)
        self.assertIn("bind first", decode_responses(transport.value())[-1].message)

        for pipelined in (False, True):
            protocol, transport = self.connect()
            if pipelined:
                protocol.dataReceived(bind_request(1, ADMIN, SECRET.encode()) + large)
            else:
                protocol.dataReceived(bind_request(1, ADMIN, SECRET.encode()))
                protocol.dataReceived(large)
            responses = decode_responses(transport.value())
            self.assertFalse(transport.disconnecting, pipelined)
            self.assertEqual([r.tag for r in responses], [0x61, 0x64, 0x65], pipelined)

        # A bind that is still being checked (argon2 runs in a thread).
        gate: Deferred[None] = Deferred()
        check = self.backend.bind

        async def slow_bind(name: str, password: bytes, address: str | None) -> Any:
            await gate
            return await check(name, password, address)

        self.patch(self.backend, "bind", slow_bind)
        protocol, transport = self.connect()
        protocol.dataReceived(bind_request(1, ADMIN, SECRET.encode()) + large)
        self.assertFalse(transport.disconnecting)
        gate.callback(None)
        responses = decode_responses(transport.value())
        self.assertEqual([r.tag for r in responses], [0x61, 0x64, 0x65])

    def test_waiting_buffer_bounded(self) -> None:
        """
        Before the access check completes, a connection buffers at most one
        message.
        """
        self.backend.current_policy = lambda: None  # type: ignore[method-assign]
        from twisted.internet.defer import Deferred

        waiting: Deferred[AccessPolicy] = Deferred()
        self.backend.policy = lambda: waiting  # type: ignore[method-assign]
        factory = self.make_factory(max_message_size=4096)
        protocol, transport = self.connect(factory=factory)
        for _ in range(10):
            protocol.dataReceived(b"\x00" * 1000)
        self.assertTrue(transport.disconnected)
        waiting.callback(OPEN_POLICY)
        self.assertEqual(transport.value(), b"")

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.binary(max_size=64), max_size=8))
    def test_random_streams(self, chunks: list[bytes]) -> None:
        """
        Random bytes never raise; the connection answers with valid
        messages or ends with a notice of disconnection.
        """
        self.check_stream(chunks)

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def test_mutated_streams(self, data: st.DataObject) -> None:
        """
        Valid request streams with bytes flipped, inserted or removed never
        raise, and the answers stay well-formed.
        """
        stream = bytearray(
            bind_request(1, ADMIN, SECRET.encode())
            + search_request(
                2,
                USERS,
                "(&(objectClass=user)(|(uid=a*)(!(mail=*))))",
                attributes=("cn", "+"),
            )
            + compare_request(3, USERS, "ou", "users")
            + extended_request(4, "1.3.6.1.4.1.4203.1.11.3")
            + search_request(5, USERS, "(cn=*)", controls=paged_control(2))
            + abandon_request(6, 5)
        )
        for _ in range(data.draw(st.integers(1, 6))):
            position = data.draw(st.integers(0, len(stream) - 1))
            action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
            if action == "flip":
                stream[position] ^= data.draw(st.integers(1, 255))
            elif action == "insert":
                stream.insert(position, data.draw(st.integers(0, 255)))
            else:
                del stream[position]
        cut = data.draw(st.integers(0, len(stream)))
        self.check_stream([bytes(stream[:cut]), bytes(stream[cut:])])

    def check_stream(self, chunks: list[bytes]) -> None:
        factory = self.make_factory(max_message_size=1024)
        protocol, transport = self.connect(factory=factory)
        for chunk in chunks:
            protocol.dataReceived(chunk)
            self.flush()
        responses = decode_responses(transport.value())
        self.assertLessEqual(len(protocol._buffer), 1024 + 64)
        for response in responses[:-1]:
            self.assertNotEqual(response.message_id, 0)
        if transport.disconnecting:
            self.assertEqual(responses[-1].name, NOTICE)
