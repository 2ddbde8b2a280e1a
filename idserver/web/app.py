"""
The HTTP application: one Klein app behind L{FrontResource}.

L{build_http_resource} is where the pages are put together: the health
check of L{WebApp}, and the OpenID Connect provider with its login pages,
which are separate Klein apps found by path prefix. The dashboard mounts
its resources here the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Protocol

from klein import Klein
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from idserver.config import Config
from idserver.web.request import FrontResource
from idserver.web.routing import PrefixRouter, Routes

__all__ = [
    "PING_TIMEOUT",
    "WebApp",
    "build_http_resource",
]

# Seconds the health check waits for the database before it reports it as
# failed; a load balancer's probe usually gives up after a few seconds.
PING_TIMEOUT = 5.0


class Pingable(Protocol):
    """
    A database the health check can test.
    """

    def ping(self) -> Deferred[None]: ...


class WebApp:
    """
    The routes of the HTTP listeners.

    @ivar directory: returns the open directory, or C{None} while it is not
        open (before start and after stop).
    """

    app = Klein()
    # Werkzeug redirects a path with doubled slashes to an absolute URL
    # built from the client's Host header, so such a path gets 404.
    app.url_map.merge_slashes = False
    log = Logger()

    def __init__(
        self,
        *,
        clock: IReactorTime,
        directory: Callable[[], Pingable | None],
        ping_timeout: float = PING_TIMEOUT,
    ) -> None:
        self.clock = clock
        self.directory = directory
        self.ping_timeout = ping_timeout
        self._last_state = "ok"

    @app.route("/healthz", methods=["GET", "HEAD"])
    async def healthz(self, request: IRequest) -> bytes:
        """
        Report whether the server can reach its database: C{200} with
        C{{"status": "ok", "database": "ok"}}, or C{503} with
        C{"status": "error"} and the database's state.
        """
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")

        database = await self._check_database()
        if database == "ok" and self._last_state != "ok":
            self.log.info("Health check: the database is reachable again")
        self._last_state = database
        if database == "ok":
            body = {"status": "ok", "database": "ok"}
        else:
            request.setResponseCode(503)
            body = {"status": "error", "database": database}
        return json.dumps(body).encode("utf-8") + b"\n"

    async def _check_database(self) -> str:
        directory = self.directory()
        if directory is None:
            return "unavailable"
        try:
            await directory.ping().addTimeout(self.ping_timeout, self.clock)
        except TimeoutError:
            # A load balancer probes every few seconds: log a change of
            # state, not every failed probe.
            if self._last_state != "timeout":
                self.log.error(
                    "Health check: the database did not respond within {timeout} s",
                    timeout=self.ping_timeout,
                )
            return "timeout"
        except Exception:
            if self._last_state != "error":
                self.log.failure("Health check: the database ping failed")
            return "error"
        return "ok"


def build_http_resource(
    config: Config,
    *,
    clock: IReactorTime,
    directory: Callable[[], Pingable | None],
    routes: Callable[[], Routes] = lambda: (),
) -> IResource:
    """
    Build the root resource of every HTTP listener.

    @param directory: returns the open directory, or C{None} while it is
        not open.
    @param routes: returns the path prefixes served by other resources
        (the OpenID Connect provider, its login pages and the dashboard);
        the rest goes to L{WebApp}.
    """
    web = WebApp(clock=clock, directory=directory)
    router = PrefixRouter(routes, web.app.resource())
    return FrontResource(router, config.http.trusted_proxies)
