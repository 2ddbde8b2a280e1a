"""
TLS for the HTTP and LDAP listeners: certificates, context options and
server endpoints.

Every TLS listener of idserver accepts TLS 1.2 and newer only. Twisted's
C{ssl:} endpoint string parser cannot set a minimum version (its C{sslmethod}
option only selects an OpenSSL method), so C{ssl:} listener strings are not
handed to L{serverFromString}: L{ssl_server_endpoint} parses them itself and
builds an L{SSL4ServerEndpoint} around L{CertificateOptions} with
C{raiseMinimumTo=TLSVersion.TLSv1_2}. LDAP's StartTLS uses the same options
through L{server_tls_options}.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import (
    IProtocolNegotiationFactory,
    IReactorSSL,
    IStreamServerEndpoint,
)
from twisted.internet.ssl import CertificateOptions, DiffieHellmanParameters, TLSVersion
from twisted.python.filepath import FilePath

if TYPE_CHECKING:
    from idserver.config import Config, TLSConfig

__all__ = [
    "MINIMUM_TLS_VERSION",
    "EndpointDescription",
    "EndpointError",
    "ServerCertificateOptions",
    "certificate_options",
    "check_server_endpoint",
    "create_self_signed_certificate",
    "parse_endpoint_description",
    "server_endpoint",
    "server_tls_options",
    "ssl_server_endpoint",
]

MINIMUM_TLS_VERSION = TLSVersion.TLSv1_2

# The keyword arguments that an ssl: listener string may carry. Twisted's own
# parser also takes sslmethod, which is rejected here because it would
# replace the minimum protocol version.
_SSL_OPTIONS = frozenset(
    {"interface", "backlog", "privateKey", "certKey", "extraCertChain", "dhParameters"}
)
_SSL_PATH_OPTIONS = ("privateKey", "certKey", "extraCertChain", "dhParameters")


class EndpointError(ValueError):
    """
    A listener string cannot be turned into a server endpoint. The message
    describes what is wrong with it; the caller adds the configuration key.
    """


@dataclass(frozen=True)
class EndpointDescription:
    """
    A parsed Twisted endpoint string.

    @ivar kind: the endpoint type before the first colon (C{tcp}, C{ssl} …).
    @ivar args: the positional arguments after it.
    @ivar kwargs: the C{name=value} arguments.
    """

    kind: str
    args: tuple[str, ...]
    kwargs: dict[str, str] = field(default_factory=dict)


def parse_endpoint_description(description: str) -> EndpointDescription:
    """
    Split an endpoint string with the rules of L{serverFromString}: C{:}
    separates arguments, the first C{=} of an argument separates a keyword
    from its value, and a backslash makes the next character literal.

    @raise EndpointError: the string is empty or ends with a lone backslash.
    """
    segments: list[list[str]] = [[""]]
    characters = iter(description)
    for character in characters:
        if character == "\\":
            try:
                segments[-1][-1] += next(characters)
            except StopIteration:
                raise EndpointError("it ends with a lone backslash") from None
        elif character == ":":
            segments.append([""])
        elif character == "=" and len(segments[-1]) == 1:
            segments[-1].append("")
        else:
            segments[-1][-1] += character

    kind = segments[0][0] if len(segments[0]) == 1 else ""
    if not kind:
        raise EndpointError("it does not start with an endpoint type such as tcp:")

    args: list[str] = []
    kwargs: dict[str, str] = {}
    for segment in segments[1:]:
        if len(segment) == 1:
            args.append(segment[0])
        else:
            kwargs[segment[0]] = segment[1]
    return EndpointDescription(kind.lower(), tuple(args), kwargs)


def _parse_port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise EndpointError(f"the port {value!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise EndpointError(f"the port {port} is not between 0 and 65535")
    return port


def _resolve(path: str, base_dir: Path) -> Path:
    if "\0" in path:
        raise EndpointError(f"the file name {path!r} contains a NUL character")
    try:
        return (base_dir / Path(path).expanduser()).resolve()
    except RuntimeError as e:
        # A symlink loop, or ~user for a user that does not exist.
        raise EndpointError(f"cannot resolve the file name {path!r}: {e}") from None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise EndpointError(f"cannot read the {what} {str(path)!r}: {e.strerror}")


class ServerCertificateOptions(CertificateOptions):
    """
    L{CertificateOptions} with an ALPN selection that lets the handshake go
    on when the client offers no protocol the server supports.

    NOTE: Twisted 26.10 responds to such a client with an empty protocol name,
    which pyOpenSSL turns into a fatal alert, so every browser, curl and
    any other client that sends ALPN (h2, http/1.1) fails to connect. RFC
    7301 section 3.2 lets the server ignore the extension instead, which
    is what this class does.
    """

    _alpn_installed = False

    def getContext(self) -> SSL.Context:
        context: SSL.Context = super().getContext()
        if not self._alpn_installed:
            context.set_alpn_select_callback(_select_protocol)
            self._alpn_installed = True
        return context


def _select_protocol(connection: SSL.Connection, offered: list[bytes]) -> Any:
    # Returns the chosen protocol name, or pyOpenSSL's NO_OVERLAPPING_PROTOCOLS
    # sentinel to go on without one.
    protocol = connection.get_app_data()
    factory = getattr(getattr(protocol, "factory", None), "wrappedFactory", None)
    negotiation = IProtocolNegotiationFactory(factory, None)
    if negotiation is not None:
        for name in negotiation.acceptableProtocols():
            if name in offered:
                return bytes(name)
    return SSL.NO_OVERLAPPING_PROTOCOLS


def certificate_options(
    certificate: Path,
    private_key: Path,
    *,
    extra_chain: Path | None = None,
    dh_parameters: Path | None = None,
) -> CertificateOptions:
    """
    Load a PEM certificate and private key into server context options that
    accept TLS 1.2 and newer.

    @param certificate: the server certificate, optionally followed by the
        intermediate certificates that complete its chain.
    @param private_key: the matching private key, unencrypted.
    @param extra_chain: a file of further chain certificates.
    @param dh_parameters: a file of Diffie-Hellman parameters for the DHE
        ciphers.

    @raise EndpointError: a file cannot be read or parsed, or the key does not
        belong to the certificate.
    """
    certificate_pem = _read(certificate, "certificate")
    key_pem = _read(private_key, "private key")

    try:
        chain = x509.load_pem_x509_certificates(certificate_pem)
    except ValueError:
        raise EndpointError(
            f"the certificate {str(certificate)!r} is not a PEM certificate"
        ) from None
    if extra_chain is not None:
        try:
            chain += x509.load_pem_x509_certificates(
                _read(extra_chain, "certificate chain")
            )
        except ValueError:
            raise EndpointError(
                f"the certificate chain {str(extra_chain)!r} contains no PEM "
                "certificate"
            ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise EndpointError(
            f"the private key {str(private_key)!r} is not an unencrypted PEM key"
        ) from None

    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise EndpointError(
            f"the private key {str(private_key)!r} is not an RSA, ECDSA or Ed25519 key"
        )

    leaf, *intermediates = chain
    if key.public_key() != leaf.public_key():
        raise EndpointError(
            f"the private key {str(private_key)!r} does not belong to the "
            f"certificate {str(certificate)!r}"
        )

    dh = None
    if dh_parameters is not None:
        _read(dh_parameters, "Diffie-Hellman parameters")
        dh = DiffieHellmanParameters.fromFile(FilePath(str(dh_parameters)))

    # Twisted's CertificateOptions still takes pyOpenSSL objects.
    return ServerCertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(leaf),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in intermediates],
        dhParameters=dh,
        raiseMinimumTo=MINIMUM_TLS_VERSION,
    )


def server_tls_options(config: Config) -> CertificateOptions:
    """
    Build the context options for the certificate of the C{[tls]} section,
    for C{ssl:} listeners without their own certificate and for StartTLS.

    @raise EndpointError: the section is missing or its files are unusable.
    """
    return _default_options(config.tls)


def _default_options(tls: TLSConfig | None) -> CertificateOptions:
    if tls is None:
        raise EndpointError(
            "no certificate: set [tls] certificate and private_key, "
            "or certKey= and privateKey= in the listener string"
        )
    return certificate_options(tls.certificate, tls.private_key)


def ssl_server_endpoint(
    reactor: IReactorSSL,
    description: str,
    *,
    tls: TLSConfig | None,
    base_dir: Path,
) -> SSL4ServerEndpoint:
    """
    Build a TLS server endpoint from an C{ssl:} listener string, such as
    C{ssl:636:interface=127.0.0.1}, that accepts TLS 1.2 and newer only.

    The string takes the options of Twisted's C{ssl:} endpoints except
    C{sslmethod}. Without C{certKey} and C{privateKey} it uses the C{[tls]}
    certificate; with only C{privateKey}, that file must hold the
    certificate too, as in Twisted. Relative file names are taken from
    C{base_dir}.

    @raise EndpointError: the string or a file it names is invalid.
    """
    parsed = parse_endpoint_description(description)
    if parsed.kind != "ssl":
        raise EndpointError("it is not an ssl: endpoint")
    if len(parsed.args) != 1:
        raise EndpointError("an ssl: endpoint takes exactly one port, as in ssl:443")
    if "sslmethod" in parsed.kwargs:
        raise EndpointError(
            "sslmethod is not supported: idserver always accepts TLS 1.2 and newer"
        )
    unknown = sorted(set(parsed.kwargs) - _SSL_OPTIONS)
    if unknown:
        raise EndpointError(
            f"unknown option {unknown[0]!r}; ssl: endpoints take "
            + ", ".join(sorted(_SSL_OPTIONS))
        )

    port = _parse_port(parsed.args[0])
    backlog_text = parsed.kwargs.get("backlog", "50")
    try:
        backlog = int(backlog_text)
    except ValueError:
        raise EndpointError(f"the backlog {backlog_text!r} is not a number") from None

    paths = {
        name: _resolve(parsed.kwargs[name], base_dir)
        for name in _SSL_PATH_OPTIONS
        if name in parsed.kwargs
    }
    if "privateKey" in paths:
        options = certificate_options(
            paths.get("certKey", paths["privateKey"]),
            paths["privateKey"],
            extra_chain=paths.get("extraCertChain"),
            dh_parameters=paths.get("dhParameters"),
        )
    elif "certKey" in paths:
        raise EndpointError("certKey= needs privateKey= as well")
    elif tls is None:
        options = _default_options(tls)
    else:
        options = certificate_options(
            tls.certificate,
            tls.private_key,
            extra_chain=paths.get("extraCertChain"),
            dh_parameters=paths.get("dhParameters"),
        )

    return SSL4ServerEndpoint(
        reactor,
        port,
        options,
        backlog=backlog,
        interface=parsed.kwargs.get("interface", ""),
    )


def _check_systemd(parsed: EndpointDescription) -> None:
    # Twisted resolves systemd: endpoints against the descriptors inherited
    # from systemd when it parses them, which only works inside the service.
    # Outside it (the command line, tests) the string is checked for form.
    if parsed.args:
        raise EndpointError("systemd: endpoints take keyword options only")
    unknown = sorted(set(parsed.kwargs) - {"domain", "index", "name"})
    if unknown:
        raise EndpointError(f"unknown option {unknown[0]!r} for a systemd: endpoint")
    domain = parsed.kwargs.get("domain")
    if domain is None or not isinstance(getattr(socket, "AF_" + domain, None), int):
        raise EndpointError("systemd: endpoints need domain=INET, INET6 or UNIX")
    if ("index" in parsed.kwargs) == ("name" in parsed.kwargs):
        raise EndpointError("systemd: endpoints need exactly one of index= or name=")
    if "index" in parsed.kwargs and not parsed.kwargs["index"].isdigit():
        raise EndpointError(f"the index {parsed.kwargs['index']!r} is not a number")


def check_server_endpoint(
    description: str, *, tls: TLSConfig | None, base_dir: Path
) -> EndpointDescription:
    """
    Check that a listener string can be built into a server endpoint, without
    listening and without touching the running reactor.

    @return: the parsed string.
    @raise EndpointError: it cannot.
    """
    from twisted.internet.testing import MemoryReactor

    parsed = parse_endpoint_description(description)
    if parsed.kind == "ssl":
        ssl_server_endpoint(MemoryReactor(), description, tls=tls, base_dir=base_dir)
    elif parsed.kind == "systemd":
        _check_systemd(parsed)
    else:
        if parsed.kind in ("tcp", "tcp6") and parsed.args:
            _parse_port(parsed.args[0])
        if parsed.kind == "unix" and not (parsed.args and parsed.args[0]):
            raise EndpointError("a unix: endpoint needs a socket path")
        _server_from_string(MemoryReactor(), description, parsed)
    return parsed


def _server_from_string(
    reactor: object, description: str, parsed: EndpointDescription
) -> IStreamServerEndpoint:
    try:
        endpoint: IStreamServerEndpoint = serverFromString(reactor, description)
    except ValueError as e:
        raise EndpointError(str(e)) from None
    except Exception as e:
        # Twisted's parsers report missing or unexpected arguments as a
        # TypeError of their own function signature.
        raise EndpointError(
            f"invalid arguments for a {parsed.kind}: endpoint ({e})"
        ) from None
    return endpoint


def server_endpoint(
    reactor: IReactorSSL, description: str, config: Config
) -> IStreamServerEndpoint:
    """
    Build the server endpoint of one C{listen} entry of C{config}.

    C{ssl:} strings get TLS 1.2 or newer and the C{[tls]} certificate unless
    they name their own; every other type goes to L{serverFromString}.

    @raise EndpointError: the string is invalid.
    """
    parsed = parse_endpoint_description(description)
    if parsed.kind == "ssl":
        return ssl_server_endpoint(
            reactor, description, tls=config.tls, base_dir=config.base_dir
        )
    return _server_from_string(reactor, description, parsed)


def _write_private(path: Path, data: bytes) -> None:
    # The key file is created with mode 0600 from the start, so it is never
    # readable by others, not even for a moment.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def create_self_signed_certificate(
    certificate_path: Path,
    private_key_path: Path,
    *,
    hostnames: Iterable[str] = ("localhost",),
    addresses: Iterable[str] = ("127.0.0.1",),
    days: int = 825,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """
    Create an ECDSA P-256 key and a self-signed certificate for it, valid for
    the given host names and IP addresses (as subject alternative names),
    and write both as PEM files. The key file gets mode 0600.

    @param days: the validity period; 825 days is the longest that Apple's
        TLS clients accept for a server certificate.
    @return: the certificate.
    """
    hostnames = list(hostnames)
    ip_addresses = [ipaddress.ip_address(a) for a in addresses]
    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())

    common_name = hostnames[0] if hostnames else str(ip_addresses[0])
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "idserver"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    alternative_names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    alternative_names += [x509.IPAddress(a) for a in ip_addresses]

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )

    _write_private(
        private_key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certificate
