"""
Tests for L{idserver.tls}.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.testing import MemoryReactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from idserver.config import TLSConfig, load_config
from idserver.tls import (
    EndpointError,
    ServerCertificateOptions,
    check_server_endpoint,
    create_self_signed_certificate,
    parse_endpoint_description,
    server_endpoint,
    server_tls_options,
    ssl_server_endpoint,
)
from tests.configfiles import make_certificate, write_config


def escape(value: str) -> str:
    """
    Escape the characters that separate endpoint arguments.
    """
    return "".join("\\" + c if c in ":=\\" else c for c in value)


class SelfSignedCertificateTests(SynchronousTestCase):
    """
    Tests for L{create_self_signed_certificate}.
    """

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.certificate_path = self.directory / "certificate.pem"
        self.key_path = self.directory / "private-key.pem"

    def test_names(self) -> None:
        """
        The certificate names C{localhost} and C{127.0.0.1} as subject
        alternative names.
        """
        create_self_signed_certificate(self.certificate_path, self.key_path)

        certificate = x509.load_pem_x509_certificate(self.certificate_path.read_bytes())
        names = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual(
            names.get_values_for_type(x509.IPAddress),
            [ipaddress.ip_address("127.0.0.1")],
        )
        self.assertEqual(certificate.issuer, certificate.subject)

    def test_other_names(self) -> None:
        """
        Other host names and addresses can be given.
        """
        create_self_signed_certificate(
            self.certificate_path,
            self.key_path,
            hostnames=["id.test", "ldap.test"],
            addresses=["::1"],
        )

        certificate = x509.load_pem_x509_certificate(self.certificate_path.read_bytes())
        names = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        self.assertEqual(
            names.get_values_for_type(x509.DNSName), ["id.test", "ldap.test"]
        )
        self.assertEqual(
            names.get_values_for_type(x509.IPAddress), [ipaddress.ip_address("::1")]
        )

    def test_key_private(self) -> None:
        """
        The key file has mode 0600, also when it replaces a readable file.
        """
        self.key_path.write_text("old")
        self.key_path.chmod(0o644)

        create_self_signed_certificate(self.certificate_path, self.key_path)

        self.assertEqual(stat.S_IMODE(self.key_path.stat().st_mode), 0o600)

    def test_key_matches(self) -> None:
        """
        The key file contains the key of the certificate.
        """
        certificate = create_self_signed_certificate(
            self.certificate_path, self.key_path
        )

        key = serialization.load_pem_private_key(
            self.key_path.read_bytes(), password=None
        )
        self.assertEqual(key.public_key(), certificate.public_key())

    def test_validity(self) -> None:
        """
        The certificate is valid from just before C{now} for C{days} days.
        """
        now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)

        certificate = create_self_signed_certificate(
            self.certificate_path, self.key_path, days=10, now=now
        )

        self.assertLessEqual(certificate.not_valid_before_utc, now)
        self.assertEqual(
            certificate.not_valid_after_utc, now + datetime.timedelta(days=10)
        )

    def test_server_certificate(self) -> None:
        """
        The certificate is a server certificate, not a CA.
        """
        certificate = create_self_signed_certificate(
            self.certificate_path, self.key_path
        )

        constraints = certificate.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
        self.assertFalse(constraints.ca)
        usage = certificate.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        ).value
        self.assertIn(x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, list(usage))


class ParseEndpointDescriptionTests(SynchronousTestCase):
    """
    Tests for L{parse_endpoint_description}.
    """

    def test_arguments(self) -> None:
        """
        Positional and keyword arguments are split at colons.
        """
        parsed = parse_endpoint_description("ssl:636:interface=127.0.0.1:backlog=5")

        self.assertEqual(parsed.kind, "ssl")
        self.assertEqual(parsed.args, ("636",))
        self.assertEqual(parsed.kwargs, {"interface": "127.0.0.1", "backlog": "5"})

    def test_kind_lower_case(self) -> None:
        """
        The endpoint type is compared without case, as Twisted does.
        """
        self.assertEqual(parse_endpoint_description("SSL:443").kind, "ssl")

    def test_escapes(self) -> None:
        """
        A backslash makes the next character literal.
        """
        parsed = parse_endpoint_description(r"ssl:443:privateKey=C\:/key\=1.pem")

        self.assertEqual(parsed.kwargs, {"privateKey": "C:/key=1.pem"})

    def test_equals_in_value(self) -> None:
        """
        Only the first C{=} of an argument separates the keyword.
        """
        parsed = parse_endpoint_description("unix:/run/x:mode=a=b")

        self.assertEqual(parsed.kwargs, {"mode": "a=b"})

    def test_trailing_backslash(self) -> None:
        """
        A lone backslash at the end is an error.
        """
        self.assertRaises(EndpointError, parse_endpoint_description, "tcp:80\\")

    def test_no_kind(self) -> None:
        """
        A string without a type is an error.
        """
        for description in ["", ":80", "a=b:80"]:
            self.assertRaises(EndpointError, parse_endpoint_description, description)

    @given(
        st.lists(st.text(min_size=1), max_size=4),
        st.dictionaries(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1),
            st.text(),
            max_size=4,
        ),
    )
    def test_escaped_values(self, args: list[str], kwargs: dict[str, str]) -> None:
        """
        Any escaped argument values come back as they were.
        """
        parts = ["tcp", *(escape(a) for a in args)]
        parts += [f"{k}={escape(v)}" for k, v in kwargs.items()]

        parsed = parse_endpoint_description(":".join(parts))

        self.assertEqual(parsed.args, tuple(args))
        self.assertEqual(parsed.kwargs, kwargs)


class SSLServerEndpointTests(SynchronousTestCase):
    """
    Tests for L{ssl_server_endpoint}.
    """

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        certificate, key = make_certificate(self.directory)
        self.tls = TLSConfig(certificate, key)
        self.reactor = MemoryReactor()

    def build(self, description: str, tls: TLSConfig | None = None) -> object:
        return ssl_server_endpoint(
            self.reactor, description, tls=tls, base_dir=self.directory
        )

    def test_endpoint(self) -> None:
        """
        The port, interface and backlog are taken from the string.
        """
        endpoint = self.build("ssl:636:interface=127.0.0.1:backlog=7", self.tls)

        assert isinstance(endpoint, SSL4ServerEndpoint)
        endpoint.listen(Factory())
        port, factory, options, backlog, interface = self.reactor.sslServers[0]
        self.assertEqual(port, 636)
        self.assertEqual(backlog, 7)
        self.assertEqual(interface, "127.0.0.1")
        self.assertIsInstance(options, ServerCertificateOptions)

    def test_default_certificate(self) -> None:
        """
        Without C{certKey} and C{privateKey} the C{[tls]} certificate is
        used.
        """
        endpoint = self.build("ssl:636", self.tls)

        assert isinstance(endpoint, SSL4ServerEndpoint)
        endpoint.listen(Factory())
        options = self.reactor.sslServers[0][2]
        expected = x509.load_pem_x509_certificate(self.tls.certificate.read_bytes())
        self.assertEqual(options.certificate.to_cryptography(), expected)

    def test_own_certificate(self) -> None:
        """
        C{certKey} and C{privateKey}, relative to the base directory, take
        precedence over C{[tls]}.
        """
        other = self.directory / "other"
        other.mkdir()
        make_certificate(other)

        endpoint = self.build(
            "ssl:636:certKey=other/certificate.pem:privateKey=other/private-key.pem",
            self.tls,
        )

        assert isinstance(endpoint, SSL4ServerEndpoint)
        endpoint.listen(Factory())
        options = self.reactor.sslServers[0][2]
        expected = x509.load_pem_x509_certificate(
            (other / "certificate.pem").read_bytes()
        )
        self.assertEqual(options.certificate.to_cryptography(), expected)

    def test_combined_file(self) -> None:
        """
        With only C{privateKey}, that file contains the certificate too.
        """
        combined = self.directory / "combined.pem"
        combined.write_bytes(
            self.tls.certificate.read_bytes() + self.tls.private_key.read_bytes()
        )

        endpoint = self.build("ssl:636:privateKey=combined.pem")

        self.assertIsInstance(endpoint, SSL4ServerEndpoint)

    def test_errors(self) -> None:
        """
        Invalid strings raise L{EndpointError} saying why.
        """
        cases = {
            "tcp:636": "not an ssl: endpoint",
            "ssl:636:637": "exactly one port",
            "ssl:-1": "not between 0 and 65535",
            "ssl:636:sslmethod=TLS_METHOD": "sslmethod is not supported",
            "ssl:636:verify=yes": "unknown option 'verify'",
            "ssl:636:extraCertChain=private-key.pem": "contains no PEM certificate",
            "ssl:636:privateKey=certificate.pem": "not an unencrypted PEM key",
        }
        for description, reason in cases.items():
            error = self.assertRaises(EndpointError, self.build, description, self.tls)
            self.assertIn(reason, str(error))

    def test_minimum_version(self) -> None:
        """
        The context options refuse TLS 1.1 and older.
        """
        endpoint = self.build("ssl:636", self.tls)

        assert isinstance(endpoint, SSL4ServerEndpoint)
        endpoint.listen(Factory())
        options: CertificateOptions = self.reactor.sslServers[0][2]
        # NOTE: Twisted keeps the protocol flags in a private attribute.
        flags = options._options
        from OpenSSL import SSL

        self.assertTrue(flags & SSL.OP_NO_TLSv1)
        self.assertTrue(flags & SSL.OP_NO_TLSv1_1)
        self.assertFalse(flags & SSL.OP_NO_TLSv1_2)


class ServerEndpointTests(SynchronousTestCase):
    """
    Tests for L{server_endpoint}, L{check_server_endpoint} and
    L{server_tls_options}.
    """

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.config = load_config(
            write_config(self.directory, ldap='listen = ["tcp:0"]')
        )

    def test_ssl(self) -> None:
        """
        C{ssl:} strings get L{ssl_server_endpoint}'s TLS endpoint.
        """
        endpoint = server_endpoint(MemoryReactor(), "ssl:0", self.config)
        self.assertIsInstance(endpoint, SSL4ServerEndpoint)

    def test_other_types(self) -> None:
        """
        Other types are built by Twisted's parser.
        """
        reactor = MemoryReactor()
        self.assertIsInstance(
            server_endpoint(reactor, "tcp:0", self.config), TCP4ServerEndpoint
        )
        self.assertIsInstance(
            server_endpoint(reactor, "unix:/run/idserver.sock", self.config),
            UNIXServerEndpoint,
        )

    def test_invalid(self) -> None:
        """
        An invalid string raises L{EndpointError}.
        """
        self.assertRaises(
            EndpointError, server_endpoint, MemoryReactor(), "tcp:x", self.config
        )

    def test_check_systemd(self) -> None:
        """
        C{systemd:} strings are checked for form without inherited sockets.
        """
        parsed = check_server_endpoint(
            "systemd:domain=INET6:name=https", tls=None, base_dir=self.directory
        )
        self.assertEqual(parsed.kind, "systemd")
        error = self.assertRaises(
            EndpointError,
            check_server_endpoint,
            "systemd:443:domain=INET:index=0",
            tls=None,
            base_dir=self.directory,
        )
        self.assertIn("keyword options only", str(error))

    def test_tls_options(self) -> None:
        """
        L{server_tls_options} loads the C{[tls]} certificate with the TLS 1.2
        minimum, for StartTLS.
        """
        options = server_tls_options(self.config)
        self.assertIsInstance(options, ServerCertificateOptions)
        assert self.config.tls is not None
        expected = x509.load_pem_x509_certificate(
            self.config.tls.certificate.read_bytes()
        )
        self.assertEqual(options.certificate.to_cryptography(), expected)

    def test_tls_options_without_tls(self) -> None:
        """
        Without C{[tls]}, L{server_tls_options} raises L{EndpointError}.
        """
        config = load_config(write_config(self.directory / "plain", tls=False))
        self.assertRaises(EndpointError, server_tls_options, config)


class Echo(Protocol):
    """
    Sends back what it receives.
    """

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def handshake(
    port: int,
    *,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    alpn: list[str] | None = None,
    cafile: Path | None = None,
) -> str:
    """
    Connect to C{port} on 127.0.0.1 with Python's C{ssl} module, send a line
    and read it back (blocking; run it in a thread).

    @return: the negotiated TLS version.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cafile)
    # Let the client offer TLS 1.0 and 1.1, which OpenSSL's default
    # security level forbids, so that refusing them is the server's doing.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = maximum
    if alpn:
        context.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as connection:
            connection.sendall(b"ping\n")
            received = b""
            while not received.endswith(b"\n"):
                chunk = connection.recv(100)
                if not chunk:
                    break
                received += chunk
            if received != b"ping\n":
                raise AssertionError(f"echo returned {received!r}")
            version: str = connection.version() or ""
            return version


class TLSHandshakeTests(TestCase):
    """
    Handshakes of real clients with an L{ssl_server_endpoint} listener.
    """

    def setUp(self) -> defer.Deferred[None]:
        from twisted.internet import reactor

        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        self.certificate, key = make_certificate(self.directory)
        endpoint = ssl_server_endpoint(
            reactor,
            "ssl:0:interface=127.0.0.1",
            tls=TLSConfig(self.certificate, key),
            base_dir=self.directory,
        )
        listening = endpoint.listen(Factory.forProtocol(Echo))

        def listened(port: IListeningPort) -> None:
            self.port = port.getHost().port
            self.addCleanup(port.stopListening)

        return listening.addCallback(listened)

    async def run_handshake(self, **kwargs: object) -> str:
        result: str = await deferToThread(handshake, self.port, **kwargs)
        return result

    @defer.inlineCallbacks
    def test_tls_1_2_and_1_3(self) -> defer.Generator[object, object, None]:
        """
        TLS 1.2 and 1.3 clients connect.
        """
        version = yield defer.Deferred.fromCoroutine(
            self.run_handshake(maximum=ssl.TLSVersion.TLSv1_2)
        )
        self.assertEqual(version, "TLSv1.2")
        version = yield defer.Deferred.fromCoroutine(self.run_handshake())
        self.assertEqual(version, "TLSv1.3")

    @defer.inlineCallbacks
    def test_old_versions_refused(self) -> defer.Generator[object, object, None]:
        """
        A client that offers at most TLS 1.1 or 1.0 gets a protocol_version
        alert from the server.
        """
        for maximum in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                attempt = defer.Deferred.fromCoroutine(
                    self.run_handshake(maximum=maximum)
                )
            failure = yield self.assertFailure(attempt, ssl.SSLError)
            self.assertEqual(failure.reason, "TLSV1_ALERT_PROTOCOL_VERSION")

    @defer.inlineCallbacks
    def test_alpn_client(self) -> defer.Generator[object, object, None]:
        """
        A client offering ALPN protocols the server does not name, as
        browsers and curl do, still connects.
        """
        version = yield defer.Deferred.fromCoroutine(
            self.run_handshake(alpn=["h2", "http/1.1"])
        )
        self.assertEqual(version, "TLSv1.3")

    @defer.inlineCallbacks
    def test_certificate_verifies(self) -> defer.Generator[object, object, None]:
        """
        A client that trusts the self-signed certificate verifies it for
        127.0.0.1.
        """
        version = yield defer.Deferred.fromCoroutine(
            self.run_handshake(cafile=self.certificate)
        )
        self.assertEqual(version, "TLSv1.3")
