"""
Storing the LDAP server's settings from the dashboard, and the settings an
LDAP client application is configured with.

The rules (allowlist syntax, secret generation and hashing) are those of
L{idserver.ldap.access}, which the LDAP server reads the same settings
with.

NOTE: C{idserver-admin ldap-server} stores these settings with code of its
own; the steps here are the same (the allowlist lines as given, a
generated secret as its SHA-256, a chosen one with argon2id, a secret
generated when the server is enabled without one), and should move to one
function that both call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from idserver.admin.ldap_server import MIN_SECRET_LENGTH
from idserver.config import LDAPConfig
from idserver.errors import ValidationError
from idserver.interfaces import IDirectory
from idserver.ldap.access import (
    ALLOWLIST_KEY,
    ENABLED_KEY,
    SECRET_HASH_KEY,
    InvalidAllowlist,
    generate_secret,
    hash_generated_secret,
    is_generated_hash,
    parse_allowlist,
)
from idserver.ldap.dn import format_dn, parse_dn

__all__ = [
    "LDAPState",
    "client_settings",
    "ldap_state",
    "listener_urls",
    "store_access",
    "store_secret",
]


@dataclass(frozen=True)
class LDAPState:
    """
    The LDAP server settings as the dashboard shows them.

    @ivar secret: C{"generated"}, C{"chosen"} or C{None} when none is set.
    """

    enabled: bool
    allowlist: tuple[str, ...]
    secret: str | None


def ldap_state(settings: dict[str, Any]) -> LDAPState:
    """
    Read the LDAP server settings from the directory's settings.
    """
    stored = settings.get(SECRET_HASH_KEY)
    secret = None
    if isinstance(stored, str) and stored:
        secret = "generated" if is_generated_hash(stored) else "chosen"
    return LDAPState(
        enabled=settings.get(ENABLED_KEY) is True,
        allowlist=tuple(str(line) for line in settings.get(ALLOWLIST_KEY) or ()),
        secret=secret,
    )


def parse_allowlist_text(text: str) -> list[str]:
    """
    Validate allowlist text (one address or CIDR range per line, C{#}
    comments) and return its lines as stored, without blank ones.

    @raise ValidationError: a line is neither, with the field C{allowlist}.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    try:
        parse_allowlist(lines)
    except InvalidAllowlist as error:
        message = str(error)
        raise ValidationError(message[:1].upper() + message[1:] + ".", "allowlist")
    return lines


async def store_access(directory: IDirectory, enabled: bool, lines: list[str]) -> None:
    """
    Store the on/off switch and the allowlist lines (validated with
    L{parse_allowlist_text}).
    """
    await directory.set_setting(ALLOWLIST_KEY, lines)
    await directory.set_setting(ENABLED_KEY, enabled)


async def store_secret(directory: IDirectory, chosen: str | None) -> str | None:
    """
    Set the admin bind secret: C{chosen}, hashed with argon2id off the
    reactor, or a generated one, stored as its SHA-256.

    @return: the generated secret, or C{None} for a chosen one.
    @raise ValidationError: C{chosen} is shorter than C{idserver-admin
        ldap-server enable --secret-stdin} accepts.
    """
    if chosen is None:
        secret = generate_secret()
        await directory.set_setting(SECRET_HASH_KEY, hash_generated_secret(secret))
        return secret
    if len(chosen) < MIN_SECRET_LENGTH:
        raise ValidationError(
            f"The secret is too short: at least {MIN_SECRET_LENGTH} characters.",
            "secret",
        )
    await directory.set_setting(SECRET_HASH_KEY, await directory.hasher.hash(chosen))
    return None


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
