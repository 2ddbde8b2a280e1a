"""
The configuration file: one TOML file, read once at start.

L{load_config} checks the whole file before anything listens or opens the
database: unknown keys (so a misspelling is not silently ignored), value
types and ranges, listener strings, certificate files. Each problem raises
L{ConfigError} with one message naming the key, the value and what is
expected. Relative paths are taken from the directory of the file.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import argon2
from twisted.python import usage

__all__ = [
    "CONFIG_ENVIRONMENT_VARIABLE",
    "DEFAULT_CONFIG_PATH",
    "Config",
    "ConfigError",
    "HTTPConfig",
    "LDAPConfig",
    "OIDCConfig",
    "PasswordsConfig",
    "ServerConfig",
    "SessionsConfig",
    "TLSConfig",
    "default_config_path",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH = "/etc/idserver/idserver.toml"
CONFIG_ENVIRONMENT_VARIABLE = "IDSERVER_CONFIG"

SESSION_STORES = ("sqlite", "redis")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(usage.UsageError):
    """
    The configuration file is missing, unreadable or invalid.

    A L{usage.UsageError}, so twistd prints the message and exits without
    starting anything.
    """


def default_config_path() -> str:
    """
    Return the path of the configuration file to use when none is given:
    C{$IDSERVER_CONFIG} when set, else C{/etc/idserver/idserver.toml}.
    """
    return os.environ.get(CONFIG_ENVIRONMENT_VARIABLE) or DEFAULT_CONFIG_PATH


@dataclass(frozen=True)
class ServerConfig:
    """
    The C{[server]} section.

    @ivar name: the first value of the C{name} setting, used by C{init}.
    @ivar public_url: the external base URL, without a trailing slash.
    @ivar data_dir: the directory of the database and the signing keys.
    """

    name: str
    public_url: str
    data_dir: Path

    @property
    def issuer(self) -> str:
        """
        The OpenID Connect issuer: C{public_url} followed by C{/openid}.
        """
        return self.public_url + "/openid"


@dataclass(frozen=True)
class TLSConfig:
    """
    The C{[tls]} section: the certificate of the dashboard, LDAPS and
    StartTLS.

    @ivar certificate: a PEM file with the certificate, optionally followed
        by its chain.
    @ivar private_key: the unencrypted PEM private key.
    """

    certificate: Path
    private_key: Path


@dataclass(frozen=True)
class HTTPConfig:
    """
    The C{[http]} section.

    @ivar listen: Twisted server endpoint strings.
    @ivar trusted_proxies: the networks whose C{X-Forwarded-For} and
        C{X-Forwarded-Proto} headers are believed.
    """

    listen: tuple[str, ...]
    trusted_proxies: tuple[Network, ...]


@dataclass(frozen=True)
class LDAPConfig:
    """
    The C{[ldap]} section.

    @ivar listen: Twisted server endpoint strings; C{ssl:} ones are LDAPS,
        the others offer StartTLS.
    @ivar suffix: the base DN of the tree.
    @ivar max_entries: the most entries an unpaged search returns, and the
        largest page of a paged one.
    @ivar idle_timeout: seconds after which an idle connection is closed.
    @ivar max_message_size: the largest request message accepted, in bytes.
    """

    listen: tuple[str, ...]
    suffix: str
    max_entries: int
    idle_timeout: float
    max_message_size: int


@dataclass(frozen=True)
class SessionsConfig:
    """
    The C{[sessions]} section.

    @ivar store: C{sqlite} (the directory's database) or C{redis}.
    @ivar redis_url: where the Redis store connects, when C{store} is
        C{redis}.
    """

    store: str
    redis_url: str | None


@dataclass(frozen=True)
class PasswordsConfig:
    """
    The C{[passwords]} section: argon2id parameters and the hashing pool.

    @ivar time_cost: argon2 iterations.
    @ivar memory_cost: argon2 memory in KiB.
    @ivar parallelism: argon2 lanes.
    @ivar max_threads: worker threads that hash.
    @ivar max_queue: hashes that may wait for a thread before new ones fail.
    """

    time_cost: int = argon2.DEFAULT_TIME_COST
    memory_cost: int = argon2.DEFAULT_MEMORY_COST
    parallelism: int = argon2.DEFAULT_PARALLELISM
    max_threads: int = 2
    max_queue: int = 32


@dataclass(frozen=True)
class OIDCConfig:
    """
    The C{[oidc]} section: lifetimes, in seconds, of what the OpenID Connect
    provider issues and of browser sessions.

    @ivar refresh_grace: how long a rotated refresh token still works, for a
        client that retries a refresh whose response it lost.
    @ivar session_lifetime: the longest a browser session lasts.
    @ivar session_idle_timeout: how long a browser session lasts unused.
    """

    code_lifetime: float = 60.0
    access_token_lifetime: float = 3600.0
    id_token_lifetime: float = 3600.0
    refresh_token_lifetime: float = 30 * 86400.0
    refresh_grace: float = 10.0
    session_lifetime: float = 14 * 86400.0
    session_idle_timeout: float = 86400.0


@dataclass(frozen=True)
class Config:
    """
    The whole configuration.

    @ivar path: the file it was read from.
    @ivar base_dir: the directory relative paths are taken from.
    @ivar tls: C{None} when the file has no C{[tls]} section.
    """

    path: Path
    base_dir: Path
    server: ServerConfig
    tls: TLSConfig | None
    http: HTTPConfig
    ldap: LDAPConfig
    sessions: SessionsConfig
    passwords: PasswordsConfig
    oidc: OIDCConfig = OIDCConfig()


T = TypeVar("T")
_REQUIRED: Any = object()


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


# The keys of each section, in the order the documentation lists them.
_SECTIONS: dict[str, tuple[str, ...]] = {
    "server": ("name", "public_url", "data_dir"),
    "tls": ("certificate", "private_key"),
    "http": ("listen", "trusted_proxies"),
    "ldap": ("listen", "suffix", "max_entries", "idle_timeout", "max_message_size"),
    "sessions": ("store", "redis_url"),
    "passwords": (
        "time_cost",
        "memory_cost",
        "parallelism",
        "max_threads",
        "max_queue",
    ),
    "oidc": (
        "code_lifetime",
        "access_token_lifetime",
        "id_token_lifetime",
        "refresh_token_lifetime",
        "refresh_grace",
        "session_lifetime",
        "session_idle_timeout",
    ),
}


class _Table:
    """
    One section of the file being read: checks its keys at once (so that a
    misspelled key is reported as such, not as a missing one) and hands out
    typed values.
    """

    def __init__(self, source: str, name: str, data: object) -> None:
        self.source = source
        self.name = name
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: {name} must be a table ([{name}])")
        self.data: dict[str, Any] = data
        self.keys = _SECTIONS[name]
        for key in data:
            if key not in self.keys:
                raise ConfigError(
                    f"{source}: unknown key {name}.{key}; "
                    f"[{name}] takes " + ", ".join(self.keys)
                )

    def error(self, key: str, value: object, expected: str) -> ConfigError:
        return ConfigError(
            f"{self.source}: invalid {self.name}.{key} = {_show(value)}: "
            f"expected {expected}"
        )

    def _take(
        self,
        key: str,
        default: Any,
        expected: str,
        check: Callable[[Any], bool],
    ) -> Any:
        assert key in self.keys, key
        if key not in self.data:
            if default is _REQUIRED:
                raise ConfigError(
                    f"{self.source}: missing {self.name}.{key}: expected {expected}"
                )
            return default
        value = self.data[key]
        if not check(value):
            raise self.error(key, value, expected)
        return value

    def string(self, key: str, default: Any = _REQUIRED) -> Any:
        return self._take(
            key, default, "a non-empty string", lambda v: isinstance(v, str) and v != ""
        )

    def integer(self, key: str, default: int, minimum: int) -> int:
        expected = f"an integer of at least {minimum}"
        value: int = self._take(
            key,
            default,
            expected,
            lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
        )
        return value

    def number(self, key: str, default: float) -> float:
        # TOML has inf and nan; neither is a usable number of seconds.
        value = self._take(
            key,
            default,
            "a finite number of seconds greater than 0",
            lambda v: (
                isinstance(v, int | float)
                and not isinstance(v, bool)
                and math.isfinite(v)
                and v > 0
            ),
        )
        return float(value)

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._take(
            key,
            default,
            "a list of strings",
            lambda v: (
                isinstance(v, list | tuple)
                and all(isinstance(item, str) and item for item in v)
            ),
        )
        return tuple(value)

    def path(self, key: str, base_dir: Path, default: Any = _REQUIRED) -> Path:
        value = self.string(key, default)
        if "\0" in value:
            # No file name can hold one; resolve() would raise ValueError.
            raise self.error(key, value, "a file path without NUL characters")
        try:
            return (base_dir / Path(value).expanduser()).resolve()
        except RuntimeError as e:
            # A symlink loop, or ~user for a user that does not exist.
            raise self.error(key, value, f"a path that can be resolved ({e})") from None


# Printable ASCII without spaces: the characters a URI may contain.
_URL_TEXT = re.compile(r"[!-~]+")


def _public_url(table: _Table) -> str:
    url: str = table.string("public_url")
    expected = (
        "an absolute https:// URL without a trailing slash, query or "
        "fragment, such as https://id.example.com"
    )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise table.error("public_url", url, expected) from None
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if (
        parts.scheme not in ("https", "http")
        or (parts.scheme == "http" and not loopback)
        or not parts.hostname
        or parts.query
        or parts.fragment
        or url.endswith("/")
        or (port is not None and port == 0)
    ):
        raise table.error("public_url", url, expected)

    # The issuer is this text followed by /openid, and clients compare it as
    # a string. urlsplit lower-cases the scheme and drops tabs and newlines
    # before parsing. It also accepts spaces, user info, an empty port and
    # non-ASCII host names, which need their xn-- form.
    if (
        not _URL_TEXT.fullmatch(url)
        or not url.startswith(parts.scheme + "://")
        or "@" in parts.netloc
        or parts.netloc.endswith(":")
    ):
        raise table.error(
            "public_url",
            url,
            "a URL written in printable ASCII without spaces, user info or an"
            " empty port, with a lower-case scheme and an IDN host name in its"
            " xn-- form",
        )
    return url


def _server(table: _Table, base_dir: Path) -> ServerConfig:
    return ServerConfig(
        name=table.string("name", "idserver"),
        public_url=_public_url(table),
        data_dir=table.path("data_dir", base_dir, "/var/lib/idserver"),
    )


def _tls(table: _Table, base_dir: Path) -> TLSConfig:
    return TLSConfig(
        certificate=table.path("certificate", base_dir),
        private_key=table.path("private_key", base_dir),
    )


def _networks(table: _Table, key: str) -> tuple[Network, ...]:
    networks = []
    for entry in table.strings(key, ()):
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise table.error(
                key, entry, "IP addresses or networks such as 10.0.0.0/8 or ::1"
            ) from None
    return tuple(networks)


def _http(table: _Table) -> HTTPConfig:
    return HTTPConfig(
        listen=table.strings("listen", ("ssl:443",)),
        trusted_proxies=_networks(table, "trusted_proxies"),
    )


# RFC 4512 section 1.4: a descriptor (keystring) or a numeric OID.
_ATTRIBUTE_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)*")


def _suffix(table: _Table) -> str:
    from ldaptor.protocols.ldap.distinguishedname import (
        DistinguishedName,
        InvalidRelativeDistinguishedName,
    )

    suffix: str = table.string("suffix", "dc=cloudron")
    expected = "a distinguished name such as dc=example,dc=com"
    try:
        dn = DistinguishedName(stringValue=suffix)
    except (InvalidRelativeDistinguishedName, ValueError, IndexError):
        # ldaptor raises IndexError for a value ending with a lone backslash.
        raise table.error("suffix", suffix, expected) from None
    # ldaptor also accepts empty RDNs ("dc=example,") and empty attribute
    # types or values ("="), which RFC 4514 does not allow.
    for rdn in dn.split():
        parts = rdn.split()
        if not parts or not all(
            _ATTRIBUTE_TYPE.fullmatch(part.attributeType) and part.value
            for part in parts
        ):
            raise table.error("suffix", suffix, expected)
    return suffix


def _ldap(table: _Table) -> LDAPConfig:
    return LDAPConfig(
        listen=table.strings("listen", ("ssl:636",)),
        suffix=_suffix(table),
        max_entries=table.integer("max_entries", 1000, 1),
        idle_timeout=table.number("idle_timeout", 600.0),
        max_message_size=table.integer("max_message_size", 1024 * 1024, 1024),
    )


def _url_scheme(url: str) -> str | None:
    # urlsplit raises ValueError for some malformed URLs, such as an
    # unclosed IPv6 bracket.
    try:
        return urlsplit(url).scheme
    except ValueError:
        return None


def _sessions(table: _Table) -> SessionsConfig:
    store = table.string("store", "sqlite")
    if store not in SESSION_STORES:
        raise table.error("store", store, '"sqlite" or "redis"')
    redis_url = table.string("redis_url", None)
    if redis_url is not None and _url_scheme(redis_url) not in (
        "redis",
        "rediss",
        "unix",
    ):
        raise table.error(
            "redis_url", redis_url, "a redis://, rediss:// or unix:// URL"
        )
    if store == "redis" and redis_url is None:
        raise ConfigError(
            f"{table.source}: missing sessions.redis_url: expected a redis:// URL, "
            f'because sessions.store is "redis"'
        )
    return SessionsConfig(store=store, redis_url=redis_url)


def _passwords(table: _Table) -> PasswordsConfig:
    defaults = PasswordsConfig()
    passwords = PasswordsConfig(
        time_cost=table.integer("time_cost", defaults.time_cost, 1),
        memory_cost=table.integer("memory_cost", defaults.memory_cost, 8),
        parallelism=table.integer("parallelism", defaults.parallelism, 1),
        max_threads=table.integer("max_threads", defaults.max_threads, 1),
        max_queue=table.integer("max_queue", defaults.max_queue, 0),
    )
    if passwords.memory_cost < 8 * passwords.parallelism:
        raise table.error(
            "memory_cost",
            passwords.memory_cost,
            f"at least 8 KiB per lane of parallelism ({8 * passwords.parallelism})",
        )
    return passwords


def _oidc(table: _Table) -> OIDCConfig:
    defaults = OIDCConfig()
    oidc = OIDCConfig(
        **{
            key: table.number(key, getattr(defaults, key))
            for key in OIDCConfig.__dataclass_fields__
        }
    )
    return oidc


def _check_listeners(
    source: str, section: str, listen: tuple[str, ...], config: Config
) -> None:
    from idserver.tls import EndpointError, check_server_endpoint

    for description in listen:
        try:
            check_server_endpoint(description, tls=config.tls, base_dir=config.base_dir)
        except EndpointError as e:
            raise ConfigError(
                f"{source}: invalid {section}.listen entry {description!r}: {e}"
            ) from None


def _check_tls(source: str, config: Config) -> None:
    from idserver.tls import EndpointError, certificate_options

    if config.tls is None:
        if config.ldap.listen:
            raise ConfigError(
                f"{source}: missing [tls] certificate and private_key: expected "
                "them because LDAP listeners need a certificate for LDAPS and "
                "StartTLS"
            )
        return
    try:
        certificate_options(config.tls.certificate, config.tls.private_key)
    except EndpointError as e:
        raise ConfigError(f"{source}: invalid [tls] section: {e}") from None


def parse_config(data: dict[str, Any], *, path: Path) -> Config:
    """
    Check the parsed TOML document C{data} and build the configuration.

    @param path: the file C{data} came from, for messages and for relative
        paths.
    @raise ConfigError: a key is unknown, missing or invalid.
    """
    source = str(path)
    base_dir = path.parent.resolve()
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(
                f"{source}: unknown key {key}; the file takes the sections "
                + ", ".join(f"[{name}]" for name in _SECTIONS)
            )

    def section(name: str) -> _Table:
        return _Table(source, name, data.get(name, {}))

    server = _server(section("server"), base_dir)
    tls = _tls(section("tls"), base_dir) if "tls" in data else None
    http = _http(section("http"))
    ldap = _ldap(section("ldap"))
    sessions = _sessions(section("sessions"))
    passwords = _passwords(section("passwords"))
    oidc = _oidc(section("oidc"))

    config = Config(
        path=path,
        base_dir=base_dir,
        server=server,
        tls=tls,
        http=http,
        ldap=ldap,
        sessions=sessions,
        passwords=passwords,
        oidc=oidc,
    )
    _check_tls(source, config)
    _check_listeners(source, "http", http.listen, config)
    _check_listeners(source, "ldap", ldap.listen, config)
    return config


def load_config(path: str | os.PathLike[str]) -> Config:
    """
    Read and check the configuration file at C{path}.

    @raise ConfigError: the file is missing, unreadable, not TOML, or
        invalid.
    """
    path = Path(path).expanduser().absolute()
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {str(path)!r} not found: expected a TOML file "
            f"(set --config or {CONFIG_ENVIRONMENT_VARIABLE})"
        ) from None
    except OSError as e:
        raise ConfigError(
            f"cannot read configuration file {str(path)!r}: {e.strerror}"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        # tomllib decodes the whole file before parsing; TOML is UTF-8.
        raise ConfigError(
            f"{path}: not valid TOML: byte {e.start} is not UTF-8"
        ) from None
    return parse_config(data, path=path)
