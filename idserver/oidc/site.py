"""
Putting the OpenID Connect provider and the login pages together, for the
daemon and for tests: L{build_oidc} makes every piece from the
configuration and an open directory, and L{OIDCSite} sends each request to
the resource that serves its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from idserver.auth import LoginService
from idserver.config import Config, OIDCConfig
from idserver.directory.sqlite import SQLiteDirectory
from idserver.oidc.clients import SQLiteClientRegistry
from idserver.oidc.keys import KeyStore
from idserver.oidc.provider import Lifetimes, OpenIDProvider
from idserver.oidc.resource import OpenIDResource
from idserver.sessions.sqlite import SQLiteSessionStore
from idserver.web.login import LoginPages
from idserver.web.session import SessionLifetimes, SessionManager

__all__ = [
    "OIDC",
    "OIDCSite",
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

    def routes(self) -> list[tuple[tuple[bytes, ...], IResource]]:
        """
        Return the path prefixes and the resource serving each.
        """
        oidc: IResource = self.resource.app.resource()
        login: IResource = self.login_pages.app.resource()
        return [(path, oidc) for path in OIDC_PATHS] + [
            (path, login) for path in LOGIN_PATHS
        ]


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


@implementer(IResource)
class OIDCSite:
    """
    Sends a request to the resource registered for the leading segments of
    its path, or to C{default}.

    The chosen resource renders with the request's path untouched, so a
    Klein app sees the whole path and routes on it.
    """

    isLeaf = True

    def __init__(
        self,
        routes: Sequence[tuple[tuple[bytes, ...], IResource]],
        default: IResource,
    ) -> None:
        self.routes = list(routes)
        self.default = default

    def _choose(self, request: IRequest) -> IResource:
        segments = list(request.postpath or [])
        for prefix, resource in self.routes:
            if tuple(segments[: len(prefix)]) == prefix:
                return resource
        return self.default

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        # Never called: the site does not traverse into a leaf.
        return self._choose(request)

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("routes are given to the constructor")

    def render(self, request: IRequest) -> bytes | int:
        result: bytes | int = self._choose(request).render(request)
        return result
