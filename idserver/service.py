"""
The services of the daemon, put together by L{build_service}.

Start order: the password hasher, the directory (which applies pending
schema migrations when it opens), then the listeners. Listeners bind their
ports in C{privilegedStartService}, before C{twistd} gives up root, but
accept connections only once the reactor runs, after the directory is open.
Stopping runs in reverse: the listeners close, then the directory, then the
hasher, waiting for hashes in progress.
"""

from __future__ import annotations

import os
import resource
import stat
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.web.server import Site

from idserver.config import Config, ConfigError
from idserver.oidc.service import OIDCService
from idserver.tls import EndpointError, server_endpoint
from idserver.web.app import build_http_resource
from idserver.web.dashboard.site import DashboardRoutes
from idserver.web.request import access_log_line
from idserver.web.routing import Routes

if TYPE_CHECKING:
    from idserver.directory.sqlite import SQLiteDirectory
    from idserver.passwords import Argon2Hasher

__all__ = [
    "DirectoryService",
    "HasherService",
    "IdServerService",
    "ListenerService",
    "build_http_services",
    "build_ldap_services",
    "build_service",
    "raise_open_file_limit",
]


def format_address(address: object) -> str:
    """
    Format a listening address for logs: C{host:port}, C{[v6host]:port}, or
    a UNIX socket path.
    """
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    return str(address)


class ListenerService(StreamServerEndpointService):
    """
    Listens on one endpoint and logs when it starts and stops listening.

    Binding happens in C{privilegedStartService}; a port that cannot be
    bound raises there, so the daemon does not start without it.

    @ivar protocol: what is served, for logs (C{HTTP}, C{LDAP}).
    @ivar description: the listener string from the configuration.
    @ivar port: the listening port once bound, else C{None}.
    @ivar address: the bound address, formatted for logs.
    """

    log = Logger()

    def __init__(
        self,
        protocol: str,
        description: str,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
    ) -> None:
        super().__init__(endpoint, factory)
        self.protocol = protocol
        self.description = description
        self.port: IListeningPort | None = None
        self.address = ""
        self._raiseSynchronously = True
        self.setName(f"{protocol} {description}")

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        waiting: Deferred[IListeningPort | None] | None = self._waitingForPort
        assert waiting is not None
        waiting.addCallback(self._listening)

    def _listening(self, port: IListeningPort | None) -> IListeningPort | None:
        if port is not None:
            self.port = port
            # Taken now: a closed port can no longer tell its address.
            self.address = format_address(port.getHost())
            self.log.info(
                "{protocol} listening on {address} ({description})",
                protocol=self.protocol,
                address=self.address,
                description=self.description,
            )
        return port

    def stopService(self) -> Deferred[None]:
        if self._waitingForPort is None:
            # Never started, so there is nothing to close.
            super(StreamServerEndpointService, self).stopService()
            return succeed(None)
        stopped: Deferred[None] = super().stopService()

        def log_stop(result: None) -> None:
            if self.port is not None:
                self.log.info(
                    "{protocol} stopped listening on {address}",
                    protocol=self.protocol,
                    address=self.address,
                )
            self.port = None
            return result

        return stopped.addCallback(log_stop)


class HasherService(Service):
    """
    Runs the thread pool of the password hasher while the daemon runs.
    """

    log = Logger()

    def __init__(self, hasher: Argon2Hasher) -> None:
        self.hasher = hasher
        self.setName("password hasher")

    def startService(self) -> None:
        self.hasher.start()
        super().startService()

    def stopService(self) -> None:
        super().stopService()
        # Waits for the hashes being computed; there are few and short ones.
        self.hasher.stop()
        self.log.info("Password hasher stopped")


class DirectoryService(Service):
    """
    Opens the directory (applying pending migrations) when the daemon
    starts and closes it when it stops.

    @ivar directory: the open directory, or C{None} while it is closed.
    """

    log = Logger()

    def __init__(self, opener: Callable[[], SQLiteDirectory], path: str) -> None:
        self.opener = opener
        self.path = path
        self.directory: SQLiteDirectory | None = None
        self.setName("directory")

    def startService(self) -> None:
        self.log.info("Opening the directory {path}", path=self.path)
        self.directory = self.opener()
        super().startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        directory, self.directory = self.directory, None
        if directory is None:
            return succeed(None)
        closed: Deferred[Any] = maybeDeferred(directory.close)

        def log_close(result: object) -> None:
            self.log.info("Closed the directory {path}", path=self.path)

        return closed.addCallback(log_close)


def raise_open_file_limit() -> tuple[int, int]:
    """
    Raise the soft limit of open files to the hard limit, since every LDAP
    and HTTP connection takes a descriptor.

    @return: the soft limit before and after.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return soft, hard
    return soft, soft


class IdServerService(MultiService):
    """
    The root service of the daemon.

    @ivar config: the configuration it was built from.
    @ivar directory_service: the child that opens and closes the directory.
    """

    log = Logger()

    def __init__(self, config: Config, directory_service: DirectoryService) -> None:
        super().__init__()
        self.config = config
        self.directory_service = directory_service

    def privilegedStartService(self) -> None:
        before, after = raise_open_file_limit()
        self.log.info(
            "Open file limit: {after} (was {before})", before=before, after=after
        )
        super().privilegedStartService()

    def startService(self) -> None:
        super().startService()
        self.log.info(
            "idserver started for {public_url}",
            public_url=self.config.server.public_url,
        )

    def stopService(self) -> Deferred[None]:
        # Unlike MultiService, which stops its children all at once, stop
        # them one at a time in reverse order: the listeners close before
        # the directory, and the directory before the hasher it uses.
        self.log.info("idserver stopping")
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self) -> None:
        for child in reversed(list(self)):
            try:
                await maybeDeferred(child.stopService)
            except Exception:
                self.log.failure("Stopping {name} failed", name=child.name)
        self.log.info("idserver stopped")


def _listeners(
    protocol: str,
    descriptions: Iterable[str],
    factory: IProtocolFactory,
    config: Config,
    reactor: Any,
) -> list[ListenerService]:
    services = []
    for description in descriptions:
        try:
            endpoint = server_endpoint(reactor, description, config)
        except EndpointError as e:
            raise ConfigError(
                f"{config.path}: invalid {protocol.lower()}.listen entry "
                f"{description!r}: {e}"
            ) from None
        services.append(ListenerService(protocol, description, endpoint, factory))
    return services


def build_http_services(
    config: Config,
    *,
    reactor: Any,
    directory_service: DirectoryService,
    routes: Callable[[], Routes] = lambda: (),
) -> list[ListenerService]:
    """
    Build one listener for each C{[http] listen} entry, all serving the same
    site.

    @param routes: returns the path prefixes of the OpenID Connect provider
        and its login pages, with their resources.
    """
    root = build_http_resource(
        config,
        clock=reactor,
        directory=lambda: directory_service.directory,
        routes=routes,
    )
    site = Site(root, logFormatter=access_log_line)
    site.displayTracebacks = False
    return _listeners("HTTP", config.http.listen, site, config, reactor)


def build_ldap_services(
    config: Config, *, reactor: Any, directory_service: DirectoryService
) -> list[ListenerService]:
    """
    Build one listener for each C{[ldap] listen} entry: LDAPS for C{ssl:}
    entries, LDAP with StartTLS for the others.
    """
    from idserver.ldap.service import build_ldap_factories

    try:
        factories = build_ldap_factories(
            config, reactor=reactor, directory=lambda: directory_service.directory
        )
    except EndpointError as e:
        raise ConfigError(f"{config.path}: invalid [tls] section: {e}") from None
    services = []
    for description, factory in factories:
        services.extend(_listeners("LDAP", [description], factory, config, reactor))
    return services


def build_service(config: Config, *, reactor: Any) -> IdServerService:
    """
    Build the daemon's service tree from a checked configuration.

    @raise ConfigError: the configuration requests a feature that this
        version does not have, or a listener cannot be built.
    """
    from idserver.admin.command import database_path
    from idserver.directory.sqlite import open_directory
    from idserver.passwords import Argon2Hasher

    data_dir = config.server.data_dir
    # Not Path.is_dir, which raises PermissionError and reports a symlink
    # loop as a missing directory.
    try:
        mode = os.stat(data_dir).st_mode
    except FileNotFoundError:
        raise ConfigError(
            f"{config.path}: the data directory {str(data_dir)!r} "
            f"(server.data_dir) does not exist: create it with "
            f"idserver-admin --config {config.path} init"
        ) from None
    except OSError as e:
        raise ConfigError(
            f"{config.path}: cannot use the data directory {str(data_dir)!r} "
            f"(server.data_dir): {e.strerror}"
        ) from None
    if not stat.S_ISDIR(mode):
        raise ConfigError(
            f"{config.path}: the data directory {str(data_dir)!r} "
            f"(server.data_dir) is not a directory"
        )
    if config.sessions.store != "sqlite":
        raise ConfigError(
            f'{config.path}: sessions.store = "{config.sessions.store}" is not '
            'available in this version of idserver: expected "sqlite"'
        )

    passwords = config.passwords
    hasher = Argon2Hasher(
        reactor,
        max_threads=passwords.max_threads,
        max_queue=passwords.max_queue,
        time_cost=passwords.time_cost,
        memory_cost=passwords.memory_cost,
        parallelism=passwords.parallelism,
    )
    path = database_path(config)
    directory_service = DirectoryService(
        lambda: open_directory(path, reactor=reactor, hasher=hasher), path
    )

    root = IdServerService(config, directory_service)
    HasherService(hasher).setServiceParent(root)
    directory_service.setServiceParent(root)
    # After the directory, which it needs open; before the listeners.
    oidc_service = OIDCService(config, lambda: directory_service.directory, reactor)
    oidc_service.setServiceParent(root)
    # The dashboard shares the provider's sessions, so it is built over it.
    dashboard = DashboardRoutes(
        config, oidc_service, lambda: directory_service.directory, reactor
    )
    for listener in build_http_services(
        config,
        reactor=reactor,
        directory_service=directory_service,
        routes=lambda: (*oidc_service.routes(), *dashboard.routes()),
    ):
        listener.setServiceParent(root)
    for listener in build_ldap_services(
        config, reactor=reactor, directory_service=directory_service
    ):
        listener.setServiceParent(root)
    return root
