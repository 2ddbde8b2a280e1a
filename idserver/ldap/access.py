"""
Access to the LDAP server: the on/off switch, the address allowlist and the
secret of the admin bind DN, kept as settings in the directory.

Settings keys:

 - C{ldap_server.enabled}: a boolean; while false, connections are closed
   as soon as they open;
 - C{ldap_server.allowlist}: a list of lines, each an IPv4 or IPv6 address
   or CIDR range, optionally followed by a C{#} comment;
 - C{ldap_server.secret_hash}: the admin secret, as C{sha256:<hex>} for a
   generated secret or an argon2id hash for one an administrator chose.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALLOWLIST_KEY",
    "ENABLED_KEY",
    "SECRET_HASH_KEY",
    "AccessPolicy",
    "InvalidAllowlist",
    "check_generated_secret",
    "generate_secret",
    "hash_generated_secret",
    "is_generated_hash",
    "parse_allowlist",
]

ENABLED_KEY = "ldap_server.enabled"
ALLOWLIST_KEY = "ldap_server.allowlist"
SECRET_HASH_KEY = "ldap_server.secret_hash"  # noqa: S105 (a settings key)
REQUIRE_2FA_KEY = "ldap_require_2fa"

_GENERATED_PREFIX = "sha256:"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv4 addresses embedded in IPv6 as ::ffff:a.b.c.d (RFC 4291 §2.5.5.2).
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


class InvalidAllowlist(ValueError):
    """
    An allowlist line is not an address or CIDR range.
    """


def _as_ipv4(network: Network) -> Network:
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen >= 96
        and network.subnet_of(_MAPPED)
    ):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


def parse_allowlist(lines: Iterable[str]) -> tuple[Network, ...]:
    """
    Parse allowlist lines: an address or CIDR range per line, C{#} starts a
    comment, blank lines are ignored. IPv4-mapped IPv6 entries become IPv4
    ones. Host bits set in a range are ignored (C{10.0.0.1/8} is
    C{10.0.0.0/8}).

    @raise InvalidAllowlist: a line is neither.
    """
    networks = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise InvalidAllowlist(
                f"Invalid allowlist entry {text!r}: expected an IPv4 or IPv6 "
                "address or a CIDR range such as 10.0.0.0/8 or fd00::/8."
            ) from None
        networks.append(_as_ipv4(network))
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class AccessPolicy:
    """
    The LDAP server settings as the server applies them.

    @ivar enabled: whether connections are served at all.
    @ivar allowlist: the networks clients may connect from.
    @ivar allowlist_lines: the allowlist as stored, comments included.
    @ivar secret_hash: the stored admin secret, or C{None} when unset (the
        admin DN cannot bind then).
    @ivar require_2fa: whether users with 2FA must add a TOTP code to binds.
    """

    enabled: bool = False
    allowlist: tuple[Network, ...] = ()
    allowlist_lines: tuple[str, ...] = ()
    secret_hash: str | None = None
    require_2fa: bool = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> AccessPolicy:
        """
        Build the policy from the directory's settings. An allowlist line
        that does not parse (stored by an older version, or edited by hand)
        is skipped, so it allows nothing.
        """
        lines = tuple(str(line) for line in settings.get(ALLOWLIST_KEY) or ())
        networks: list[Network] = []
        for line in lines:
            try:
                networks.extend(parse_allowlist([line]))
            except InvalidAllowlist:
                continue
        secret_hash = settings.get(SECRET_HASH_KEY)
        return cls(
            enabled=settings.get(ENABLED_KEY) is True,
            allowlist=tuple(networks),
            allowlist_lines=lines,
            secret_hash=secret_hash
            if isinstance(secret_hash, str) and secret_hash
            else None,
            require_2fa=settings.get(REQUIRE_2FA_KEY) is True,
        )

    def allows(self, host: str) -> bool:
        """
        Return whether a client at address C{host} may connect: the server
        is enabled and the address is on the allowlist, an IPv4-mapped IPv6
        address counting as its IPv4 address.
        """
        if not self.enabled:
            return False
        address = _address(host)
        if address is None:
            return False
        return any(address in network for network in self.allowlist)


def generate_secret() -> str:
    """
    Return a new random admin secret (192 bits, URL-safe base64).
    """
    return secrets.token_urlsafe(24)


def hash_generated_secret(secret: str) -> str:
    """
    Hash a generated secret for storage. Its entropy makes SHA-256 enough,
    and checking it costs no argon2 time.
    """
    return _GENERATED_PREFIX + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def is_generated_hash(stored: str) -> bool:
    """
    Return whether C{stored} is the hash of a generated secret.
    """
    return stored.startswith(_GENERATED_PREFIX)


def check_generated_secret(stored: str, secret: str) -> bool:
    """
    Check C{secret} against the stored hash of a generated secret, in
    constant time.
    """
    return hmac.compare_digest(stored, hash_generated_secret(secret))
