"""
The LDAP listeners of the daemon: one protocol factory per C{[ldap]
listen} entry, all over one backend, so every listener searches the same
snapshot.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from typing import Any

from idserver.config import Config
from idserver.interfaces import IDirectory
from idserver.ldap.backend import LDAPBackend
from idserver.ldap.paging import CookieSigner
from idserver.ldap.server import LDAPServerFactory
from idserver.tls import parse_endpoint_description, server_tls_options

__all__ = ["build_ldap_factories", "connection_limit"]

# The maximum number of connections one LDAP listener keeps open.
MAX_CONNECTIONS = 10000


def connection_limit(listeners: int) -> int:
    """
    Return the connection limit of each of C{listeners} LDAP listeners: at
    most L{MAX_CONNECTIONS}, and together at most half of the open-file
    limit that the daemon raises to at start (the hard limit), so HTTP
    connections and files keep descriptors and accept() does not fail.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = soft if hard == resource.RLIM_INFINITY else hard
    if files == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, files // 2 // max(1, listeners)))


def build_ldap_factories(
    config: Config,
    *,
    reactor: Any,
    directory: IDirectory | Callable[[], IDirectory | None],
) -> list[tuple[str, LDAPServerFactory]]:
    """
    Build the protocol factory of each C{[ldap] listen} entry.

    C{ssl:} entries speak TLS from the start (LDAPS); the others offer
    StartTLS with the C{[tls]} certificate.

    @param directory: the directory, or a function returning it once the
        daemon has opened it.
    @return: pairs of the listener string and its factory.
    @raise idserver.tls.EndpointError: the certificate cannot be loaded.
    """
    ldap = config.ldap
    backend = LDAPBackend(reactor, directory, suffix=ldap.suffix)
    max_connections = connection_limit(len(ldap.listen))
    starttls = server_tls_options(config) if config.tls is not None else None
    signer = CookieSigner()
    factories = []
    for description in ldap.listen:
        kind = parse_endpoint_description(description).kind
        factory = LDAPServerFactory(
            backend,
            reactor,
            max_entries=ldap.max_entries,
            idle_timeout=ldap.idle_timeout,
            max_message_size=ldap.max_message_size,
            max_connections=max_connections,
            starttls=None if kind == "ssl" else starttls,
            signer=signer,
        )
        factories.append((description, factory))
    return factories
