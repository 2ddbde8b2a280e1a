"""
Putting the dashboard together: L{build_dashboard} makes the pages from the
pieces of the OpenID Connect provider (the same session store, browser
sessions and login service, so one sign-in serves both), and
L{Dashboard.routes} gives the path prefixes to mount next to the provider's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import IResource, NoResource

from idserver.auth import LoginService
from idserver.config import Config, LDAPConfig
from idserver.directory.sqlite import SQLiteDirectory
from idserver.interfaces import IAuditLog, IClientRegistry, IDirectory, ISessionStore
from idserver.web.dashboard.account import AccountPages
from idserver.web.dashboard.audit import AuditPages
from idserver.web.dashboard.base import DashboardContext, DashboardPages
from idserver.web.dashboard.clients import ClientPages
from idserver.web.dashboard.groups import GroupPages
from idserver.web.dashboard.ldap import LDAPPages
from idserver.web.dashboard.settings import SettingsPages
from idserver.web.dashboard.users import UserPages
from idserver.web.routing import PrefixRouter
from idserver.web.session import SessionManager

__all__ = ["Dashboard", "DashboardRoutes", "build_dashboard"]

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
        routes = [(prefix, self._app(kind)) for prefix, kind in _PAGES]
        self.resource = PrefixRouter(lambda: routes, NoResource())

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


class DashboardRoutes:
    """
    The dashboard of the daemon, built over the pieces of the running
    OpenID Connect provider (the provider exists only while the daemon
    runs, after the directory opened).

    @ivar provider: an object whose C{oidc} attribute is the provider's
        L{idserver.oidc.site.OIDC}, or C{None} while it is stopped.
    """

    def __init__(
        self,
        config: Config,
        provider: Any,
        directory: Callable[[], SQLiteDirectory | None],
        clock: IReactorTime,
    ) -> None:
        self.config = config
        self.provider = provider
        self.directory = directory
        self.clock = clock
        self._built: tuple[Any, Dashboard] | None = None

    def routes(self) -> list[tuple[tuple[bytes, ...], IResource]]:
        """
        Return the dashboard's routes, none while the provider is stopped.
        """
        oidc = self.provider.oidc
        directory = self.directory()
        if oidc is None or directory is None:
            self._built = None
            return []
        if self._built is None or self._built[0] is not oidc:
            self._built = (oidc, self._build(oidc, directory))
        return self._built[1].routes()

    def _build(self, oidc: Any, directory: SQLiteDirectory) -> Dashboard:
        return build_dashboard(
            directory=directory,
            audit=directory,
            store=oidc.store,
            sessions=oidc.sessions,
            clients=oidc.clients,
            logins=oidc.logins,
            clock=self.clock,
            issuer=lambda: str(oidc.provider.issuer),
            public_url=self.config.server.public_url,
            ldap=self.config.ldap,
        )
