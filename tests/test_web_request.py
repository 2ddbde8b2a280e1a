"""
Tests for L{idserver.web.request} and the health check of
L{idserver.web.app}.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.test.requesthelper import DummyRequest

from idserver.web.app import PING_TIMEOUT, WebApp
from idserver.web.request import (
    SECURITY_HEADERS,
    FrontResource,
    access_log_line,
    client_address,
    request_is_secure,
    resolve_client,
)

PROXIES = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("2001:db8::/32"),
)


def make_request(
    peer: object,
    headers: dict[bytes, list[bytes]] | None = None,
    *,
    secure: bool = False,
) -> DummyRequest:
    """
    Make a request from C{peer} with C{headers}, over TLS when C{secure}.
    """
    request = DummyRequest([b""])
    request.client = peer
    request.isSecure = lambda: secure
    for name, values in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, values)
    return request


class ResolveClientTests(SynchronousTestCase):
    """
    Tests for L{resolve_client}.
    """

    def test_untrusted_peer(self) -> None:
        """
        Forwarding headers from a peer that is not a trusted proxy are
        ignored.
        """
        request = make_request(
            IPv4Address("TCP", "192.0.2.7", 1234),
            {
                b"x-forwarded-for": [b"198.51.100.1"],
                b"x-forwarded-proto": [b"https"],
            },
        )

        info = resolve_client(request, PROXIES)

        self.assertEqual(info.address, "192.0.2.7")
        self.assertFalse(info.secure)

    def test_trusted_proxy(self) -> None:
        """
        From a trusted proxy, the last address of C{X-Forwarded-For} and
        C{X-Forwarded-Proto} count.
        """
        request = make_request(
            IPv4Address("TCP", "10.1.2.3", 1234),
            {
                b"x-forwarded-for": [b"198.51.100.1"],
                b"x-forwarded-proto": [b"https"],
            },
        )

        info = resolve_client(request, PROXIES)

        self.assertEqual(info.address, "198.51.100.1")
        self.assertTrue(info.secure)

    def test_spoofed_entries(self) -> None:
        """
        Entries left of the first untrusted address, which the client may
        have sent itself, are ignored.
        """
        request = make_request(
            IPv4Address("TCP", "10.1.2.3", 1234),
            {b"x-forwarded-for": [b"10.9.9.9, 203.0.113.5", b"10.0.0.2"]},
        )

        info = resolve_client(request, PROXIES)

        self.assertEqual(info.address, "203.0.113.5")

    def test_all_trusted(self) -> None:
        """
        When every hop is a trusted proxy, the leftmost one is the client.
        """
        request = make_request(
            IPv4Address("TCP", "10.1.2.3", 1234),
            {b"x-forwarded-for": [b"10.0.0.9, 10.0.0.8"]},
        )

        self.assertEqual(resolve_client(request, PROXIES).address, "10.0.0.9")

    def test_malformed_entry(self) -> None:
        """
        A malformed entry stops the walk at the last checked address.
        """
        request = make_request(
            IPv4Address("TCP", "10.1.2.3", 1234),
            {b"x-forwarded-for": [b"198.51.100.1, unknown, 10.0.0.8"]},
        )

        self.assertEqual(resolve_client(request, PROXIES).address, "10.0.0.8")

    def test_ports_and_ipv6(self) -> None:
        """
        Entries with ports and bracketed IPv6 addresses are understood.
        """
        for entry, expected in [
            (b"198.51.100.1:5555", "198.51.100.1"),
            (b"[2001:db9::1]:443", "2001:db9::1"),
            (b"2001:db9::2", "2001:db9::2"),
        ]:
            request = make_request(
                IPv6Address("TCP", "2001:db8::1", 1234),
                {b"x-forwarded-for": [entry]},
            )
            self.assertEqual(resolve_client(request, PROXIES).address, expected)

    def test_ipv4_mapped(self) -> None:
        """
        An IPv4-mapped IPv6 peer counts as its IPv4 address.
        """
        request = make_request(
            IPv6Address("TCP", "::ffff:10.1.2.3", 1234),
            {b"x-forwarded-for": [b"198.51.100.1"]},
        )

        self.assertEqual(resolve_client(request, PROXIES).address, "198.51.100.1")
        untrusted = make_request(IPv6Address("TCP", "::ffff:192.0.2.1", 1))
        self.assertEqual(resolve_client(untrusted, PROXIES).address, "192.0.2.1")

    def test_forwarded_http(self) -> None:
        """
        C{X-Forwarded-Proto: http} from a trusted proxy marks the request
        insecure even over TLS.
        """
        request = make_request(
            IPv4Address("TCP", "10.1.2.3", 1234),
            {b"x-forwarded-proto": [b"http"]},
            secure=True,
        )

        self.assertFalse(resolve_client(request, PROXIES).secure)

    def test_unix_socket(self) -> None:
        """
        A connection over a UNIX socket has no client address.
        """
        request = make_request(UNIXAddress(b"/run/idserver.sock"))

        self.assertIsNone(resolve_client(request, PROXIES).address)

    def test_without_front_resource(self) -> None:
        """
        Outside L{FrontResource}, L{client_address} trusts no proxy.
        """
        request = make_request(
            IPv4Address("TCP", "10.1.2.3", 1234),
            {b"x-forwarded-for": [b"198.51.100.1"], b"x-forwarded-proto": [b"https"]},
        )

        self.assertEqual(client_address(request), "10.1.2.3")
        self.assertFalse(request_is_secure(request))


class AccessLogLineTests(SynchronousTestCase):
    """
    Tests for L{access_log_line}.
    """

    def make_request(self, uri: bytes, agent: bytes) -> DummyRequest:
        request = make_request(IPv4Address("TCP", "192.0.2.7", 1234))
        request.method = b"GET"
        request.uri = uri
        request.clientproto = b"HTTP/1.1"
        request.code = 200
        request.sentLength = 35
        request.requestHeaders.setRawHeaders(b"user-agent", [agent])
        request.requestHeaders.setRawHeaders(b"referer", [b"https://app/?code=abc"])
        return request

    def test_line(self) -> None:
        """
        The line has the client, the request without its query string, the
        status, the size and the user agent.
        """
        request = self.make_request(
            b"/openid/session/end?id_token_hint=secret.jwt", b"curl/8"
        )

        line = access_log_line("[04/Dec/2026:21:00:00 +0000]", request)

        self.assertEqual(
            line,
            '"192.0.2.7" - - [04/Dec/2026:21:00:00 +0000] '
            '"GET /openid/session/end HTTP/1.1" 200 35 "curl/8"',
        )

    def test_no_tokens(self) -> None:
        """
        Neither the query string nor the referrer reach the log.
        """
        request = self.make_request(b"/healthz?token=secret", b"agent")

        line = access_log_line("[ts]", request)

        self.assertNotIn("secret", line)
        self.assertNotIn("code=abc", line)

    def test_escaped(self) -> None:
        """
        Quotes and control characters from the client are escaped, so a
        client cannot forge a log line.
        """
        request = self.make_request(b'/a"b\x1bc\r\nd', b'agent"x')

        line = access_log_line("[ts]", request)

        self.assertIn('"GET /a\\"b\\x1bc\\x0d\\x0ad HTTP/1.1"', line)
        self.assertTrue(line.endswith('"agent\\"x"'), line)
        self.assertNotIn("\n", line)


class Echo:
    """
    A Klein app that returns what L{client_address} and
    L{request_is_secure} report.
    """

    app = Klein()

    @app.route("/")
    def client(self, request: IRequest) -> bytes:
        body = {
            "address": client_address(request),
            "secure": request_is_secure(request),
        }
        return json.dumps(body).encode()

    @app.route("/own-policy")
    def own_policy(self, request: IRequest) -> bytes:
        request.setHeader(b"Content-Security-Policy", b"default-src 'none'")
        return b""


class FrontResourceTests(SynchronousTestCase):
    """
    Tests for L{FrontResource}, driven through L{StubTreq} (whose client
    address is 127.0.0.1).
    """

    def get(
        self, path: str, proxies: tuple[Any, ...], headers: dict[str, str]
    ) -> tuple[Any, bytes]:
        client = StubTreq(FrontResource(Echo().app.resource(), proxies))
        response = self.successResultOf(
            client.get(f"https://example.com{path}", headers=headers)
        )
        return response, self.successResultOf(client.content(response))

    def test_client(self) -> None:
        """
        The pages see the client that a trusted proxy reports.
        """
        _, body = self.get(
            "/",
            (ipaddress.ip_network("127.0.0.0/8"),),
            {"X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https"},
        )

        self.assertEqual(json.loads(body), {"address": "198.51.100.1", "secure": True})

    def test_untrusted(self) -> None:
        """
        Without trusted proxies the pages see the peer.
        """
        _, body = self.get(
            "/", (), {"X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https"}
        )

        self.assertEqual(json.loads(body)["address"], "127.0.0.1")

    def test_headers(self) -> None:
        """
        Every response carries the security headers, a 404 too.
        """
        for path in ("/", "/missing"):
            response, _ = self.get(path, (), {})
            for name, value in SECURITY_HEADERS.items():
                self.assertEqual(response.headers.getRawHeaders(name), [value])

    def test_page_overrides(self) -> None:
        """
        A page may replace a default header.
        """
        response, _ = self.get("/own-policy", (), {})

        self.assertEqual(
            response.headers.getRawHeaders(b"content-security-policy"),
            [b"default-src 'none'"],
        )


class FakeDirectory:
    """
    A directory whose ping returns a given L{Deferred}.
    """

    def __init__(self, result: Deferred[None]) -> None:
        self.result = result

    def ping(self) -> Deferred[None]:
        return self.result


class HealthCheckTests(SynchronousTestCase):
    """
    Tests for the C{/healthz} route of L{WebApp}.
    """

    def get(self, web: WebApp) -> tuple[int, Any]:
        client = StubTreq(web.app.resource())
        response = self.successResultOf(client.get("https://example.com/healthz"))
        body = json.loads(self.successResultOf(client.content(response)))
        return response.code, body

    def test_ok(self) -> None:
        """
        A working database gives 200.
        """
        web = WebApp(clock=Clock(), directory=lambda: FakeDirectory(succeed(None)))

        self.assertEqual(self.get(web), (200, {"status": "ok", "database": "ok"}))

    def test_failure(self) -> None:
        """
        A failing ping gives 503 and is logged.
        """
        web = WebApp(
            clock=Clock(),
            directory=lambda: FakeDirectory(fail(RuntimeError("closed"))),
        )

        self.assertEqual(self.get(web), (503, {"status": "error", "database": "error"}))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_failureLoggedOnce(self) -> None:
        """
        Repeated failed probes log the failure once, and the recovery once.
        """
        results: list[Deferred[None]] = [
            fail(RuntimeError("closed")),
            fail(RuntimeError("closed")),
            fail(RuntimeError("closed")),
            succeed(None),
        ]
        web = WebApp(
            clock=Clock(),
            directory=lambda: FakeDirectory(results.pop(0)),
        )
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

        codes = [self.get(web)[0] for _ in range(4)]

        self.assertEqual(codes, [503, 503, 503, 200])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        messages = [event["log_format"] for event in observer]
        self.assertIn("Health check: the database is reachable again", messages)

    def test_timeout(self) -> None:
        """
        A ping that does not respond in time gives 503 with C{timeout}.
        """
        clock = Clock()
        web = WebApp(clock=clock, directory=lambda: FakeDirectory(Deferred()))
        client = StubTreq(web.app.resource())
        pending = client.get("https://example.com/healthz")
        self.assertNoResult(pending)

        clock.advance(PING_TIMEOUT)
        client.flush()

        response = self.successResultOf(pending)
        self.assertEqual(response.code, 503)
        body = json.loads(self.successResultOf(client.content(response)))
        self.assertEqual(body, {"status": "error", "database": "timeout"})

    def test_not_open(self) -> None:
        """
        Without an open directory the check gives 503 with C{unavailable}.
        """
        web = WebApp(clock=Clock(), directory=lambda: None)

        self.assertEqual(
            self.get(web), (503, {"status": "error", "database": "unavailable"})
        )
