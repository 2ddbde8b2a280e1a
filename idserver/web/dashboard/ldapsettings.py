"""
The settings an LDAP client application is configured with, as the
dashboard's LDAP page lists them. The page stores the server's own
settings with L{idserver.ldap.settings}, as C{idserver-admin ldap-server}
does.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from idserver.config import LDAPConfig
from idserver.ldap.dn import format_dn, parse_dn

__all__ = [
    "client_settings",
    "listener_urls",
]


_ANY_INTERFACE = frozenset({"0.0.0.0", "::"})  # noqa: S104 (compared, not bound)


def _endpoint_port(description: str) -> tuple[str, int, str | None] | None:
    """
    Return the kind (C{ssl} or C{tcp}), port and interface of a listener
    string such as C{ssl:636} or C{tcp:389:interface=127.0.0.1}, or
    C{None} for another kind (C{systemd:...}).
    """
    parts = description.split(":")
    kind = parts[0]
    if kind not in ("ssl", "tcp"):
        return None
    port = None
    interface = None
    for part in parts[1:]:
        if part.startswith("port="):
            part = part[len("port=") :]
        if part.isdigit() and port is None:
            port = int(part)
        elif part.startswith("interface="):
            interface = part[len("interface=") :]
    if port is None:
        return None
    return kind, port, interface


def listener_urls(ldap: LDAPConfig | None, public_url: str) -> list[str]:
    """
    Return the URL of each LDAP listener: C{ldaps://} for TLS listeners,
    C{ldap://} (with StartTLS) for the others, with the public host name,
    or the listener's own address when it listens on one interface.
    """
    host = urlsplit(public_url).hostname or "localhost"
    urls = []
    for description in ldap.listen if ldap is not None else ("ssl:636",):
        parsed = _endpoint_port(description)
        if parsed is None:
            continue
        kind, port, interface = parsed
        # A listener on every interface is reached through the public name.
        name = host if not interface or interface in _ANY_INTERFACE else interface
        if ":" in name:
            name = f"[{name}]"
        scheme = "ldaps" if kind == "ssl" else "ldap"
        urls.append(f"{scheme}://{name}:{port}")
    return urls


def client_settings(ldap: LDAPConfig | None, public_url: str) -> list[tuple[str, str]]:
    """
    Return the names and values an LDAP client application is configured
    with.
    """
    # Written as idserver-admin ldap-server show writes it.
    suffix = format_dn(parse_dn(ldap.suffix if ldap is not None else "dc=cloudron"))
    settings = [
        (f"URL ({url.split(':', 1)[0]})", url)
        for url in listener_urls(ldap, public_url)
    ]
    settings += [
        ("Bind DN", f"cn=admin,ou=system,{suffix}"),
        ("Users DN", f"ou=users,{suffix}"),
        ("Groups DN", f"ou=groups,{suffix}"),
        ("User filter", "(objectClass=user)"),
        ("Group filter", "(objectClass=group)"),
        ("Username attribute", "username"),
        ("Email attribute", "mail"),
        ("Display name attribute", "displayName"),
        ("Group membership attribute", "memberOf"),
    ]
    return settings
