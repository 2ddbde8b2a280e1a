"""
The OpenID Connect provider as a part of the daemon: built when the
directory has opened, with its signing keys and housekeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from idserver.config import Config
from idserver.directory.sqlite import SQLiteDirectory
from idserver.oidc.site import OIDC, build_oidc, key_store
from idserver.sessions.maintenance import SessionMaintenance
from idserver.web.routing import Routes

__all__ = ["MAINTENANCE_INTERVAL", "HousekeepingService", "OIDCService"]

# Seconds between housekeeping runs of the session store.
MAINTENANCE_INTERVAL = 60.0


class HousekeepingService(Service):
    """
    Runs L{SessionMaintenance} every L{MAINTENANCE_INTERVAL} seconds, the
    first time one interval after the start. A failed run is logged and the
    next one happens as planned.
    """

    log = Logger()

    def __init__(self, maintenance: SessionMaintenance, clock: Any) -> None:
        self.maintenance = maintenance
        self.clock = clock
        self._loop: LoopingCall | None = None
        self._finished: Deferred[LoopingCall] | None = None
        self.setName("session housekeeping")

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._run)
        self._loop.clock = self.clock
        self._finished = self._loop.start(MAINTENANCE_INTERVAL, now=False)

    async def _run_once(self) -> None:
        try:
            await self.maintenance.run()
        except Exception:
            self.log.failure("Session housekeeping failed")

    def _run(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._run_once())

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        loop, finished = self._loop, self._finished
        self._loop = self._finished = None
        if loop is None or finished is None:
            return succeed(None)
        # Stopping waits for a run in progress, which the loop's Deferred
        # fires after.
        loop.stop()
        return finished


class OIDCService(MultiService):
    """
    Creates missing signing keys and builds the provider when it starts,
    which must be after the directory opened, and runs the session store's
    housekeeping while the daemon runs.

    @ivar oidc: the provider's pieces while running, else C{None}.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        directory: Callable[[], SQLiteDirectory | None],
        reactor: Any,
    ) -> None:
        super().__init__()
        self.config = config
        self.directory = directory
        self.reactor = reactor
        self.oidc: OIDC | None = None
        self.setName("openid connect")

    def startService(self) -> None:
        directory = self.directory()
        if directory is None:
            raise RuntimeError("The directory must be open before the provider.")
        keys = key_store(self.config, self.reactor)
        for kid in keys.ensure_keys():
            self.log.info("Created missing signing key {kid}", kid=kid)
        self.oidc = build_oidc(
            issuer=self.config.server.issuer,
            oidc=self.config.oidc,
            directory=directory,
            keys=keys,
            clock=self.reactor,
        )
        maintenance = SessionMaintenance(directory, self.oidc.store, self.reactor)
        HousekeepingService(maintenance, self.reactor).setServiceParent(self)
        super().startService()
        self.log.info(
            "OpenID Connect provider ready for issuer {issuer}",
            issuer=self.config.server.issuer,
        )

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[None] = super().stopService()  # type: ignore[assignment]

        def forget(result: None) -> None:
            for child in list(self):
                child.disownServiceParent()
            self.oidc = None
            return result

        return stopped.addCallback(forget)

    def routes(self) -> Routes:
        """
        Return the paths the provider serves, none while it is stopped.
        """
        return () if self.oidc is None else self.oidc.routes()
