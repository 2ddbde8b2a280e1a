"""
A real idserver HTTPS listener on 127.0.0.1 for the dashboard tests: the
OpenID Connect provider, the login pages and the dashboard, on a fresh
SQLite directory with cheap argon2 parameters.
"""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests
import urllib3
from twisted.trial.unittest import TestCase
from twisted.web.resource import NoResource

from idserver.config import LDAPConfig, OIDCConfig
from idserver.directory.sqlite import SQLiteDirectory
from idserver.model import User
from idserver.oidc.keys import KeyStore
from idserver.oidc.model import Client
from idserver.oidc.site import OIDC, build_oidc
from idserver.tls import certificate_options, create_self_signed_certificate
from idserver.web.dashboard.site import Dashboard, build_dashboard
from idserver.web.request import FrontResource
from idserver.web.routing import PrefixRouter
from tests.oidc_fixtures import open_test_directory
from tests.oidc_server import TrackingSite

__all__ = ["PASSWORD", "REDIRECT_URI", "DashboardServer", "WebClient", "csrf_token"]

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

PASSWORD = "correct horse battery"
REDIRECT_URI = "https://app.example/callback"

LDAP = LDAPConfig(
    listen=("ssl:636", "tcp:389:interface=127.0.0.1"),
    suffix="dc=cloudron",
    max_entries=1000,
    idle_timeout=600.0,
    max_message_size=1024 * 1024,
)


@dataclasses.dataclass
class DashboardServer:
    """
    The provider and the dashboard on a random port with their own
    database and keys.
    """

    directory: SQLiteDirectory
    oidc: OIDC
    dashboard: Dashboard
    base_url: str

    @classmethod
    def start(cls, test: TestCase, config: OIDCConfig | None = None) -> DashboardServer:
        """
        Start a server that stops when C{test} ends.
        """
        from twisted.internet import reactor

        folder = Path(test.mktemp())
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
        provider = oidc.provider
        dashboard = build_dashboard(
            directory=directory,
            audit=directory,
            store=oidc.store,
            sessions=oidc.sessions,
            clients=oidc.clients,
            logins=oidc.logins,
            clock=reactor,
            issuer=lambda: provider.issuer,
            public_url="https://id.example.com",
            ldap=LDAP,
        )
        routes = [*oidc.routes(), *dashboard.routes()]
        root = FrontResource(PrefixRouter(lambda: routes, NoResource()), ())
        certificate, private_key = folder / "cert.pem", folder / "key.pem"
        create_self_signed_certificate(certificate, private_key)
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
        provider.issuer = base_url + "/openid"
        return cls(directory, oidc, dashboard, base_url)

    @property
    def issuer(self) -> str:
        return self.oidc.provider.issuer

    async def add_user(
        self,
        username: str,
        *,
        display_name: str = "",
        role: str = "user",
        password: str | None = PASSWORD,
        **options: Any,
    ) -> User:
        """
        Create a user with the test password.
        """
        user = await self.directory.add_user(
            username,
            f"{username}@example.com",
            display_name=display_name,
            role=role,
            **options,
        )
        if password is None:
            return user
        return await self.directory.set_password(user.id, password)

    async def add_client(self, **options: Any) -> tuple[Client, str | None]:
        """
        Register a client with the test redirect URI.
        """
        redirect_uris = options.pop("redirect_uris", [REDIRECT_URI])
        name = options.pop("name", "Test app")
        result: tuple[Client, str | None] = await self.oidc.clients.add_client(
            name, redirect_uris, **options
        )
        return result


def csrf_token(page: str) -> str:
    """
    Return the CSRF token of the first form of C{page}.
    """
    match = re.search(r'name="csrf_token" value="([^"]*)"', page)
    assert match is not None, page
    return html.unescape(match.group(1))


class WebClient:
    """
    A cookie-keeping HTTP client for the dashboard, blocking (run it with
    C{deferToThread}). It follows redirects within the server.
    """

    def __init__(self, server: DashboardServer) -> None:
        self.server = server
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = False
        self.page = ""

    def _follow(self, response: requests.Response) -> requests.Response:
        while response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if not location.startswith(self.server.base_url + "/"):
                break
            response = self.session.get(location, allow_redirects=False, timeout=10)
        self.page = response.text
        return response

    def get(self, path: str) -> requests.Response:
        """
        Open C{path} and follow redirects within the server.
        """
        url = urljoin(self.server.base_url, path)
        return self._follow(self.session.get(url, allow_redirects=False, timeout=10))

    def post(
        self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True
    ) -> requests.Response:
        """
        Send a form with the CSRF token of the last page opened.
        """
        fields = dict(data or {})
        if csrf:
            fields.setdefault("csrf_token", csrf_token(self.page))
        url = urljoin(self.server.base_url, path)
        return self._follow(
            self.session.post(url, data=fields, allow_redirects=False, timeout=10)
        )

    def login(
        self, username: str, password: str = PASSWORD, totp: str | None = None
    ) -> requests.Response:
        """
        Sign in through the login pages and land on the dashboard's home.
        """
        self.get("/login?return_to=/")
        response = self.post(
            "/login", {"username": username, "password": password, "return_to": "/"}
        )
        if totp is not None:
            response = self.post("/login/totp", {"totp": totp, "return_to": "/"})
        return response

    def cookie(self) -> str:
        """
        Return the value of the session cookie.
        """
        value = self.session.cookies.get("idserver_session")
        assert value, "no session cookie"
        return str(value)
