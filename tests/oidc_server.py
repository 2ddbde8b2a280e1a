"""
A real OpenID Connect provider on a TLS listener on 127.0.0.1 for tests,
and a small browser built on requests that drives its login forms.
"""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
import urllib3
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.resource import NoResource
from twisted.web.server import Site

from idserver.config import OIDCConfig
from idserver.directory.sqlite import SQLiteDirectory
from idserver.model import User
from idserver.oidc.keys import KeyStore
from idserver.oidc.model import Client
from idserver.oidc.site import OIDC, build_oidc
from idserver.tls import certificate_options
from idserver.web.request import FrontResource
from idserver.web.routing import PrefixRouter
from tests.oidc_fixtures import open_test_directory

__all__ = ["Browser", "OIDCServer", "in_thread"]

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

PASSWORD = "correct horse battery"
REDIRECT_URI = "https://app.example/callback"


def in_thread(function: Any, *args: Any, **kwargs: Any) -> Deferred[Any]:
    """
    Run a blocking client in a thread so the reactor keeps serving.
    """
    return deferToThread(function, *args, **kwargs)


def make_test_ca(folder: Path) -> tuple[Path, Path, Path]:
    """
    Create a test CA and a server certificate it signs for 127.0.0.1 and
    localhost. Some clients (Node) refuse a self-signed server certificate
    even when it is trusted, so the server gets one issued by a CA.

    @return: the server certificate, its key and the CA certificate, as
        PEM files in C{folder}.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idserver test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    certificate, private_key, ca_file = (
        folder / "cert.pem",
        folder / "key.pem",
        folder / "ca.pem",
    )
    certificate.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    private_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate, private_key, ca_file


class TrackingSite(Site):
    """
    A site that can drop its open connections, which clients with
    keep-alive leave behind, so the reactor is clean after a test.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open: set[Any] = set()

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        original = protocol.connectionLost
        self.open.add(protocol)

        def connectionLost(reason: Any) -> None:
            self.open.discard(protocol)
            original(reason)

        protocol.connectionLost = connectionLost
        return protocol

    def close_connections(self) -> Deferred[None]:
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        for protocol in list(self.open):
            channel = getattr(protocol, "_channel", protocol)
            transport = getattr(channel, "transport", None)
            if transport is not None:
                transport.abortConnection()

        async def wait() -> None:
            for _ in range(100):
                if not self.open:
                    return
                await deferLater(reactor, 0.01, lambda: None)

        return Deferred.fromCoroutine(wait())


@dataclasses.dataclass
class OIDCServer:
    """
    A provider listening on a random port with its own database and keys.
    """

    test: TestCase
    directory: SQLiteDirectory
    keys: KeyStore
    oidc: OIDC
    base_url: str
    ca_file: Path

    @classmethod
    def start(cls, test: TestCase, config: OIDCConfig | None = None) -> OIDCServer:
        from twisted.internet import reactor

        folder = Path(test.mktemp()).absolute()
        folder.mkdir(parents=True)
        directory = open_test_directory(test)
        keys = KeyStore(folder / "keys", reactor.seconds, retention=3600)
        keys.ensure_keys()
        oidc = build_oidc(
            issuer="https://placeholder/openid",
            oidc=config or OIDCConfig(),
            directory=directory,
            keys=keys,
            clock=reactor,
        )
        root = FrontResource(PrefixRouter(oidc.routes, NoResource()), ())
        certificate, private_key, ca_file = make_test_ca(folder)
        site = TrackingSite(root)
        port = reactor.listenSSL(
            0,
            site,
            certificate_options(certificate, private_key),
            interface="127.0.0.1",
        )
        test.addCleanup(site.close_connections)
        test.addCleanup(port.stopListening)
        base_url = f"https://127.0.0.1:{port.getHost().port}"
        oidc.provider.issuer = base_url + "/openid"
        return cls(test, directory, keys, oidc, base_url, ca_file)

    @property
    def issuer(self) -> str:
        return self.oidc.provider.issuer

    async def add_user(
        self, username: str, *, display_name: str = "", role: str = "user"
    ) -> User:
        user = await self.directory.add_user(
            username,
            f"{username}@example.com",
            display_name=display_name,
            role=role,
        )
        return await self.directory.set_password(user.id, PASSWORD)

    async def add_client(self, **options: Any) -> tuple[Client, str | None]:
        redirect_uris = options.pop("redirect_uris", [REDIRECT_URI])
        name = options.pop("name", "Test app")
        result: tuple[Client, str | None] = await self.oidc.clients.add_client(
            name, redirect_uris, **options
        )
        return result

    def set_lifetimes(self, **changes: float) -> None:
        provider = self.oidc.provider
        provider.lifetimes = dataclasses.replace(provider.lifetimes, **changes)


def form_fields(page: str) -> dict[str, str]:
    """
    Return the names and values of the inputs of the first form of C{page}.
    """
    fields = {}
    form = page.split("<form", 1)[1].split("</form>", 1)[0]
    for tag in re.findall(r"<input[^>]*>", form):
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[html.unescape(name.group(1))] = (
                html.unescape(value.group(1)) if value else ""
            )
    return fields


def form_action(page: str) -> str:
    match = re.search(r'<form[^>]*action="([^"]*)"', page)
    assert match is not None, page
    return html.unescape(match.group(1))


class Browser:
    """
    A cookie-keeping HTTP client that follows redirects within the server
    and stops at the first redirect elsewhere (the client application).
    """

    def __init__(self, server: OIDCServer) -> None:
        self.server = server
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = False
        self.response: requests.Response | None = None

    def _follow(self, response: requests.Response) -> requests.Response | str:
        while response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if not location.startswith(self.server.base_url + "/"):
                self.response = response
                return location
            response = self.session.get(location, allow_redirects=False, timeout=30)
        self.response = response
        return response

    def get(self, url: str) -> requests.Response | str:
        """
        Open C{url}; return the external redirect location or the page.
        """
        return self._follow(self.session.get(url, allow_redirects=False, timeout=30))

    def submit(self, page: requests.Response, **values: str) -> requests.Response | str:
        """
        Submit the first form of C{page} with C{values} filled in.
        """
        fields = form_fields(page.text)
        fields.update(values)
        url = urljoin(page.url, form_action(page.text))
        response = self.session.post(
            url, data=fields, allow_redirects=False, timeout=30
        )
        return self._follow(response)

    def login(
        self, url: str, username: str, password: str = PASSWORD, totp: str | None = None
    ) -> str:
        """
        Open an authorization URL, sign in, and return the redirect to the
        client.
        """
        page = self.get(url)
        assert isinstance(page, requests.Response), page
        assert 'name="password"' in page.text, page.text
        result = self.submit(page, username=username, password=password)
        if totp is not None:
            assert isinstance(result, requests.Response), result
            assert 'name="totp"' in result.text, result.text
            result = self.submit(result, totp=totp)
        assert isinstance(result, str), getattr(result, "text", result)
        return result


def query_of(url: str) -> dict[str, str]:
    """
    Return the query parameters of C{url}, one value each.
    """
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def pkce_pair() -> tuple[str, str]:
    """
    Return a new PKCE verifier and its S256 challenge.
    """
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def auth_url(server: OIDCServer, client_id: str, **params: str | None) -> str:
    """
    Build an authorization request URL; C{None} leaves a parameter out.
    """
    from urllib.parse import urlencode

    values: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile",
        "state": "state-1",
        "nonce": "nonce-1",
    }
    values.update(params)
    query = urlencode({k: v for k, v in values.items() if v is not None})
    return f"{server.issuer}/auth?{query}"


def http_session() -> requests.Session:
    """
    Return a requests session that ignores the environment's CA bundle and
    accepts the test certificate.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = False
    return session


def token_request(
    server: OIDCServer,
    data: dict[str, str],
    auth: tuple[str, str] | None = None,
    path: str = "/token",
) -> requests.Response:
    """
    POST a form to the token endpoint (or another under the issuer).
    """
    with http_session() as session:
        return session.post(server.issuer + path, data=data, auth=auth, timeout=10)
