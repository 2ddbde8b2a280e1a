"""
The pages of the HTTP listeners once the directory is open: the OpenID
Connect provider, the login pages and the dashboard, next to the routes of
L{idserver.web.app.WebApp} (the health check).

The listeners are built before the daemon opens the directory, so
L{ProviderPages} builds the provider and the dashboard at the first request
that finds the directory open, and again if the directory is reopened.
Until then every path but those of C{WebApp} is served by C{WebApp}
itself (404, or the health check's 503).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from idserver.config import Config

__all__ = ["ProviderPages"]


@implementer(IResource)
class ProviderPages:
    """
    Serves the provider, the login pages and the dashboard over an open
    directory, and the other paths with C{default}.

    @ivar directory: returns the open directory, or C{None}.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        config: Config,
        *,
        clock: IReactorTime,
        directory: Callable[[], Any],
        default: IResource,
    ) -> None:
        self.config = config
        self.clock = clock
        self.directory = directory
        self.default = default
        self._built: tuple[Any, IResource] | None = None

    def _site(self) -> IResource:
        directory = self.directory()
        if directory is None:
            return self.default
        if self._built is None or self._built[0] is not directory:
            self._built = (directory, self._build(directory))
        return self._built[1]

    def _build(self, directory: Any) -> IResource:
        from idserver.oidc.site import OIDCSite, build_oidc, key_store
        from idserver.web.dashboard.site import build_dashboard

        keys = key_store(self.config, self.clock)
        created = keys.ensure_keys()
        if created:
            self.log.info("Created signing keys {kids}", kids=", ".join(created))
        issuer = self.config.server.public_url.rstrip("/") + "/openid"
        oidc = build_oidc(
            issuer=issuer,
            oidc=self.config.oidc,
            directory=directory,
            keys=keys,
            clock=self.clock,
        )
        dashboard = build_dashboard(
            directory=directory,
            audit=directory,
            store=oidc.store,
            sessions=oidc.sessions,
            clients=oidc.clients,
            logins=oidc.logins,
            clock=self.clock,
            issuer=lambda: oidc.provider.issuer,
            public_url=self.config.server.public_url,
            ldap=self.config.ldap,
        )
        self.log.info("Serving the OpenID Connect provider and the dashboard")
        return OIDCSite(oidc.routes() + dashboard.routes(), self.default)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        # Never called: the site does not traverse into a leaf.
        return self._site()

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("the pages are built from the configuration")

    def render(self, request: IRequest) -> bytes | int:
        result: bytes | int = self._site().render(request)
        return result
