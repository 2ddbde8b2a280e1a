"""
Putting the OpenID Connect provider and the login pages together, for the
daemon and for tests: L{build_oidc} makes every piece from the
configuration and an open directory, and L{OIDC.routes} gives a
L{idserver.web.routing.PrefixRouter} the paths they serve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import IResource

from idserver.auth import LoginService
from idserver.config import Config, OIDCConfig
from idserver.directory.sqlite import SQLiteDirectory
from idserver.oidc.clients import SQLiteClientRegistry
from idserver.oidc.keys import KeyStore
from idserver.oidc.provider import Lifetimes, OpenIDProvider
from idserver.oidc.resource import OpenIDResource
from idserver.sessions.sqlite import SQLiteSessionStore
from idserver.web.login import LoginPages
from idserver.web.routing import Routes
from idserver.web.session import SessionLifetimes, SessionManager

__all__ = [
    "OIDC",
    "build_oidc",
    "key_store",
    "keys_directory",
]

# The paths the provider and the login pages serve, as leading segments.
OIDC_PATHS: tuple[tuple[bytes, ...], ...] = (
    (b".well-known", b"openid-configuration"),
    (b"openid",),
)
LOGIN_PATHS: tuple[tuple[bytes, ...], ...] = (
    (b"login",),
    (b"logout",),
    (b"static",),
)


def keys_directory(config: Config) -> Path:
    """
    Return the directory of the signing keys: C{<data_dir>/keys}.
    """
    return Path(config.server.data_dir) / "keys"


def key_store(config: Config, clock: IReactorTime) -> KeyStore:
    """
    Return the key store of the configured data directory; a retired key
    stays published for the ID token lifetime.
    """
    return KeyStore(
        keys_directory(config), clock.seconds, retention=config.oidc.id_token_lifetime
    )


@dataclass
class OIDC:
    """
    The pieces of the provider, for the daemon's composition.
    """

    provider: OpenIDProvider
    sessions: SessionManager
    store: SQLiteSessionStore
    clients: SQLiteClientRegistry
    logins: LoginService
    resource: OpenIDResource
    login_pages: LoginPages
    _routes: Routes | None = field(default=None, repr=False)

    def routes(self) -> Routes:
        """
        Return the path prefixes and the resource serving each.
        """
        if self._routes is None:
            oidc: IResource = self.resource.app.resource()
            login: IResource = self.login_pages.app.resource()
            self._routes = [(path, oidc) for path in OIDC_PATHS] + [
                (path, login) for path in LOGIN_PATHS
            ]
        return self._routes


def _lifetimes(oidc: OIDCConfig) -> tuple[Lifetimes, SessionLifetimes]:
    return (
        Lifetimes(
            code=oidc.code_lifetime,
            access_token=oidc.access_token_lifetime,
            id_token=oidc.id_token_lifetime,
            refresh_token=oidc.refresh_token_lifetime,
            refresh_grace=oidc.refresh_grace,
        ),
        SessionLifetimes(
            absolute=oidc.session_lifetime, idle=oidc.session_idle_timeout
        ),
    )


def build_oidc(
    *,
    issuer: str,
    oidc: OIDCConfig,
    directory: SQLiteDirectory,
    keys: KeyStore,
    clock: IReactorTime,
    logins: LoginService | None = None,
) -> OIDC:
    """
    Build the provider, the session store and the login pages on an open
    SQLite directory.

    @param logins: the login service to share with the LDAP server; a new
        one on the same counters when C{None}.
    """
    provider_lifetimes, session_lifetimes = _lifetimes(oidc)
    store = SQLiteSessionStore(directory.database, directory)
    clients = SQLiteClientRegistry(directory.database)
    if logins is None:
        logins = LoginService(directory, directory, store)
    sessions = SessionManager(store, directory, clock, session_lifetimes)
    provider = OpenIDProvider(
        issuer=issuer,
        directory=directory,
        sessions=store,
        clients=clients,
        keys=keys,
        clock=clock,
        lifetimes=provider_lifetimes,
    )
    return OIDC(
        provider=provider,
        sessions=sessions,
        store=store,
        clients=clients,
        logins=logins,
        resource=OpenIDResource(
            provider=provider, sessions=sessions, directory=directory, clock=clock
        ),
        login_pages=LoginPages(
            sessions=sessions,
            logins=logins,
            directory=directory,
            audit=directory,
            clock=clock,
        ),
    )
