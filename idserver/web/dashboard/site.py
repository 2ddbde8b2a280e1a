"""
Putting the dashboard together: L{build_dashboard} makes the pages from the
pieces of the OpenID Connect provider (the same session store, browser
sessions and login service, so one sign-in serves both), and
L{Dashboard.routes} gives the path prefixes to mount next to the provider's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, NoResource
from zope.interface import implementer

from idserver.auth import LoginService
from idserver.config import LDAPConfig
from idserver.interfaces import IAuditLog, IClientRegistry, IDirectory, ISessionStore
from idserver.web.dashboard.account import AccountPages
from idserver.web.dashboard.audit import AuditPages
from idserver.web.dashboard.base import DashboardContext, DashboardPages
from idserver.web.dashboard.clients import ClientPages
from idserver.web.dashboard.groups import GroupPages
from idserver.web.dashboard.ldap import LDAPPages
from idserver.web.dashboard.settings import SettingsPages
from idserver.web.dashboard.users import UserPages
from idserver.web.session import SessionManager

__all__ = ["Dashboard", "DashboardResource", "build_dashboard"]

# The pages of each path prefix, in the order they are tried.
_PAGES: tuple[tuple[tuple[bytes, ...], type[DashboardPages]], ...] = (
    ((b"",), AccountPages),
    ((b"account",), AccountPages),
    ((b"admin", b"users"), UserPages),
    ((b"admin", b"groups"), GroupPages),
    ((b"admin", b"clients"), ClientPages),
    ((b"admin", b"ldap"), LDAPPages),
    ((b"admin", b"settings"), SettingsPages),
    ((b"admin", b"audit"), AuditPages),
)


@implementer(IResource)
class DashboardResource:
    """
    Sends a dashboard request to the Klein app of its path prefix; the app
    sees the whole path.
    """

    isLeaf = True

    def __init__(self, routes: Sequence[tuple[tuple[bytes, ...], IResource]]) -> None:
        self.routes = list(routes)
        self.missing = NoResource()

    def _choose(self, request: IRequest) -> IResource:
        segments = list(request.postpath or [])
        for prefix, resource in self.routes:
            if tuple(segments[: len(prefix)]) == prefix:
                return resource
        return self.missing

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        # Never called: the site does not traverse into a leaf.
        return self._choose(request)

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("routes are given to the constructor")

    def render(self, request: IRequest) -> bytes | int:
        result: bytes | int = self._choose(request).render(request)
        return result


@dataclass
class Dashboard:
    """
    The dashboard's pages and the resource that serves them.
    """

    context: DashboardContext
    pages: dict[type[DashboardPages], DashboardPages] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for _, kind in _PAGES:
            if kind not in self.pages:
                self.pages[kind] = kind(self.context)
        self.resource = DashboardResource(
            [(prefix, self._app(kind)) for prefix, kind in _PAGES]
        )

    def _app(self, kind: type[DashboardPages]) -> IResource:
        resource: IResource = getattr(self.pages[kind], "app").resource()  # noqa: B009
        return resource

    def routes(self) -> list[tuple[tuple[bytes, ...], IResource]]:
        """
        Return the path prefixes the dashboard serves (C{/} exactly,
        C{/account/...} and C{/admin/...}) and the resource for them.
        """
        return [
            ((b"",), self.resource),
            ((b"account",), self.resource),
            ((b"admin",), self.resource),
        ]


def build_dashboard(
    *,
    directory: IDirectory,
    audit: IAuditLog,
    store: ISessionStore,
    sessions: SessionManager,
    clients: IClientRegistry,
    logins: LoginService,
    clock: IReactorTime,
    issuer: Callable[[], str],
    public_url: str,
    ldap: LDAPConfig | None = None,
) -> Dashboard:
    """
    Build the dashboard on the pieces of the OpenID Connect provider.

    @param issuer: returns the provider's issuer URL, shown on the client
        pages.
    @param public_url: the server's public URL; its host name goes into the
        LDAP client settings.
    @param ldap: the C{[ldap]} configuration, for the LDAP client settings.
    """
    return Dashboard(
        DashboardContext(
            directory=directory,
            audit=audit,
            store=store,
            sessions=sessions,
            clients=clients,
            logins=logins,
            clock=clock,
            issuer=issuer,
            public_url=public_url,
            ldap=ldap,
        )
    )
