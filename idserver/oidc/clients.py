"""
Registered clients: ids and secrets, redirect URI rules, and the SQLite
registry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from zope.interface import implementer

from idserver.directory.sqlite import Database
from idserver.errors import NotFoundError, ValidationError
from idserver.interfaces import IClientRegistry
from idserver.oidc.model import SIGNING_ALGORITHMS, Client

__all__ = [
    "SQLiteClientRegistry",
    "check_client_secret",
    "hash_client_secret",
    "new_client_id",
    "new_client_secret",
    "redirect_uri_matches",
    "validate_redirect_uri",
]

_CLIENT_ID = re.compile(r"cid-[0-9a-f]{32}")
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*")
_FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "vbscript", "file", "blob"})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})
# A port as a loopback redirect URI may spell it: decimal, no leading zero.
_PORT = re.compile(r":[1-9][0-9]{0,4}")
_MAX_PORT = 65535
_MAX_NAME_LENGTH = 128
_MAX_URI_LENGTH = 2000


def new_client_id() -> str:
    """
    Generate a client id: C{cid-} and 32 hex digits.
    """
    return "cid-" + secrets.token_hex(16)


def is_client_id(value: str) -> bool:
    """
    Return whether C{value} has the form of a client id.
    """
    return _CLIENT_ID.fullmatch(value) is not None


def new_client_secret() -> str:
    """
    Generate a client secret: 256 random bits, base64url.
    """
    return secrets.token_urlsafe(32)


def hash_client_secret(secret: str) -> str:
    """
    Return the stored form of a client secret: its SHA-256 in hex. A plain
    hash suffices because the secret is random and long.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_client_secret(client: Client, secret: str) -> bool:
    """
    Compare C{secret} with the client's, in constant time. A public client
    has no secret, so nothing matches.
    """
    if client.secret_hash is None:
        return False
    return hmac.compare_digest(hash_client_secret(secret), client.secret_hash)


def _has_space_or_control(text: str) -> bool:
    # A control character (NUL, DEL, C1) would end up raw in a Location
    # header or a link.
    return any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def validate_redirect_uri(uri: str, field: str = "redirect_uri") -> str:
    """
    Check that C{uri} can be registered as a redirect URI: absolute, without
    a fragment (RFC 6749 §3.1.2), with a host for C{http} and C{https}, and
    not a scheme that runs or reads content in the browser.

    @return: C{uri} unchanged, since matching is by exact string.
    @raise ValidationError: the URI cannot be registered.
    """
    if not uri or len(uri) > _MAX_URI_LENGTH or _has_space_or_control(uri):
        raise ValidationError(
            f"The redirect URI {uri!r} is invalid: expected an absolute URI of at"
            f" most {_MAX_URI_LENGTH} characters without spaces or control"
            " characters.",
            field,
        )
    scheme, _, _ = uri.partition(":")
    if not _SCHEME.fullmatch(scheme) or scheme == uri:
        raise ValidationError(
            f"The redirect URI {uri!r} is invalid: expected an absolute URI such"
            " as https://app.example.com/callback or com.example.app:/callback.",
            field,
        )
    if scheme.lower() in _FORBIDDEN_SCHEMES:
        raise ValidationError(
            f"The redirect URI {uri!r} uses the scheme {scheme!r}, which is not"
            " allowed.",
            field,
        )
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for an invalid port
    except ValueError:
        raise ValidationError(f"The redirect URI {uri!r} is invalid.", field) from None
    if "#" in uri:
        raise ValidationError(
            f"The redirect URI {uri!r} has a fragment, which is not allowed.", field
        )
    if parts.scheme.lower() in ("http", "https") and (
        not parts.hostname or "@" in parts.netloc
    ):
        raise ValidationError(
            f"The redirect URI {uri!r} is invalid: expected a host name and no"
            " user name.",
            field,
        )
    return uri


def redirect_uri_matches(registered: str, requested: str) -> bool:
    """
    Return whether C{requested} matches the registered redirect URI.

    The match is exact, except that for a registered C{http} URI on
    C{127.0.0.1} or C{[::1]} the port may differ (RFC 8252 §7.3: native
    apps listen on a port chosen at run time). Everything but the port is
    still compared as a string, because URL parsers drop characters (tab,
    CR, LF) and empty parts that would otherwise slip through.
    """
    if requested == registered:
        return True
    try:
        want = urlsplit(registered)
    except ValueError:
        return False
    if want.scheme != "http" or want.hostname not in _LOOPBACK_HOSTS:
        return False
    authority = "http://" + want.netloc
    if "@" in want.netloc or not registered.startswith(authority):
        return False
    rest = registered[len(authority) :]
    host = "http://[::1]" if want.hostname == "::1" else "http://127.0.0.1"
    if len(requested) < len(host) + len(rest):
        return False
    if not requested.startswith(host) or not requested.endswith(rest):
        return False
    port = requested[len(host) : len(requested) - len(rest)]
    if port == "":
        return True
    return _PORT.fullmatch(port) is not None and int(port[1:]) <= _MAX_PORT


def _validate_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > _MAX_NAME_LENGTH or not name.isprintable():
        raise ValidationError(
            f"The client name {name!r} is invalid: expected 1 to"
            f" {_MAX_NAME_LENGTH} printable characters.",
            "name",
        )
    return name


def _validate_algorithm(signing_alg: str) -> str:
    if signing_alg not in SIGNING_ALGORITHMS:
        raise ValidationError(
            f"The signing algorithm {signing_alg!r} is not supported: expected"
            f" {' or '.join(SIGNING_ALGORITHMS)}.",
            "signing_alg",
        )
    return signing_alg


def _validate_launch_url(url: str) -> str:
    if len(url) > _MAX_URI_LENGTH or _has_space_or_control(url):
        raise ValidationError(
            f"The launch URL {url!r} is invalid: expected an http:// or"
            f" https:// URL of at most {_MAX_URI_LENGTH} characters without spaces"
            " or control characters.",
            "launch_url",
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(
            f"The launch URL {url!r} is invalid: expected an http:// or https:// URL.",
            "launch_url",
        )
    return url


def _validate_uris(uris: list[str], field: str) -> tuple[str, ...]:
    checked = []
    for uri in uris:
        validate_redirect_uri(uri, field)
        if uri not in checked:
            checked.append(uri)
    return tuple(checked)


def _client(row: sqlite3.Row) -> Client:
    return Client(
        client_id=row["client_id"],
        name=row["name"],
        secret_hash=row["secret_hash"],
        redirect_uris=tuple(json.loads(row["redirect_uris"])),
        post_logout_redirect_uris=tuple(json.loads(row["post_logout_redirect_uris"])),
        launch_url=row["launch_url"],
        signing_alg=row["signing_alg"],
        public=bool(row["public"]),
        allowed_group_ids=tuple(json.loads(row["allowed_group_ids"])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _store(connection: sqlite3.Connection, client: Client) -> None:
    connection.execute(
        "INSERT OR REPLACE INTO oidc_clients (client_id, name, secret_hash,"
        " redirect_uris, post_logout_redirect_uris, launch_url, signing_alg,"
        " public, allowed_group_ids, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            client.client_id,
            client.name,
            client.secret_hash,
            json.dumps(list(client.redirect_uris)),
            json.dumps(list(client.post_logout_redirect_uris)),
            client.launch_url,
            client.signing_alg,
            int(client.public),
            json.dumps(list(client.allowed_group_ids)),
            client.created_at,
            client.updated_at,
        ),
    )


def _select(connection: sqlite3.Connection, client_id: str) -> Client | None:
    cursor = connection.execute(
        "SELECT * FROM oidc_clients WHERE client_id = ?", (client_id,)
    )
    cursor.row_factory = sqlite3.Row
    row = cursor.fetchone()
    return None if row is None else _client(row)


@implementer(IClientRegistry)
class SQLiteClientRegistry:
    """
    An L{IClientRegistry} in the C{oidc_clients} table of the directory's
    SQLite database, sharing its connection and thread.
    """

    def __init__(self, database: Database) -> None:
        self._db = database

    def _now(self) -> float:
        return self._db.clock.seconds()

    def add_client(
        self,
        name: str,
        redirect_uris: list[str],
        *,
        post_logout_redirect_uris: list[str] | None = None,
        launch_url: str | None = None,
        signing_alg: str = "RS256",
        public: bool = False,
        allowed_group_ids: list[str] | None = None,
    ) -> Deferred[tuple[Client, str | None]]:
        return Deferred.fromCoroutine(
            self._add_client(
                name,
                redirect_uris,
                post_logout_redirect_uris=post_logout_redirect_uris,
                launch_url=launch_url,
                signing_alg=signing_alg,
                public=public,
                allowed_group_ids=allowed_group_ids,
            )
        )

    async def _add_client(
        self,
        name: str,
        redirect_uris: list[str],
        *,
        post_logout_redirect_uris: list[str] | None,
        launch_url: str | None,
        signing_alg: str,
        public: bool,
        allowed_group_ids: list[str] | None,
    ) -> tuple[Client, str | None]:
        if not redirect_uris:
            raise ValidationError(
                "A client needs at least one redirect URI.", "redirect_uris"
            )
        secret = None if public else new_client_secret()
        now = self._now()
        client = Client(
            client_id=new_client_id(),
            name=_validate_name(name),
            secret_hash=None if secret is None else hash_client_secret(secret),
            redirect_uris=_validate_uris(redirect_uris, "redirect_uris"),
            post_logout_redirect_uris=_validate_uris(
                post_logout_redirect_uris or [], "post_logout_redirect_uris"
            ),
            launch_url=_validate_launch_url(launch_url) if launch_url else None,
            signing_alg=_validate_algorithm(signing_alg),
            public=public,
            allowed_group_ids=tuple(sorted(set(allowed_group_ids or []))),
            created_at=now,
            updated_at=now,
        )

        def add(connection: sqlite3.Connection) -> tuple[Client, str | None]:
            _store(connection, client)
            return client, secret

        return await self._db.write(add)

    def get_client(self, client_id: str) -> Deferred[Client | None]:
        return self._db.read(_select, client_id)

    def list_clients(self) -> Deferred[list[Client]]:
        def select(connection: sqlite3.Connection) -> list[Client]:
            cursor = connection.execute(
                "SELECT * FROM oidc_clients ORDER BY name COLLATE NOCASE, client_id"
            )
            cursor.row_factory = sqlite3.Row
            return [_client(row) for row in cursor.fetchall()]

        return self._db.read(select)

    def update_client(
        self,
        client_id: str,
        *,
        name: str | None = None,
        redirect_uris: list[str] | None = None,
        post_logout_redirect_uris: list[str] | None = None,
        launch_url: str | None = None,
        signing_alg: str | None = None,
        public: bool | None = None,
        allowed_group_ids: list[str] | None = None,
        new_secret: bool = False,
    ) -> Deferred[tuple[Client, str | None]]:
        return Deferred.fromCoroutine(
            self._update_client(
                client_id,
                name=name,
                redirect_uris=redirect_uris,
                post_logout_redirect_uris=post_logout_redirect_uris,
                launch_url=launch_url,
                signing_alg=signing_alg,
                public=public,
                allowed_group_ids=allowed_group_ids,
                new_secret=new_secret,
            )
        )

    async def _update_client(
        self,
        client_id: str,
        *,
        name: str | None,
        redirect_uris: list[str] | None,
        post_logout_redirect_uris: list[str] | None,
        launch_url: str | None,
        signing_alg: str | None,
        public: bool | None,
        allowed_group_ids: list[str] | None,
        new_secret: bool,
    ) -> tuple[Client, str | None]:
        changes: dict[str, object] = {}
        if name is not None:
            changes["name"] = _validate_name(name)
        if redirect_uris is not None:
            if not redirect_uris:
                raise ValidationError(
                    "A client needs at least one redirect URI.", "redirect_uris"
                )
            changes["redirect_uris"] = _validate_uris(redirect_uris, "redirect_uris")
        if post_logout_redirect_uris is not None:
            changes["post_logout_redirect_uris"] = _validate_uris(
                post_logout_redirect_uris, "post_logout_redirect_uris"
            )
        if launch_url is not None:
            changes["launch_url"] = (
                _validate_launch_url(launch_url) if launch_url else None
            )
        if signing_alg is not None:
            changes["signing_alg"] = _validate_algorithm(signing_alg)
        if allowed_group_ids is not None:
            changes["allowed_group_ids"] = tuple(sorted(set(allowed_group_ids)))
        now = self._now()
        candidate_secret = new_client_secret()

        def update(connection: sqlite3.Connection) -> tuple[Client, str | None]:
            client = _select(connection, client_id)
            if client is None:
                raise NotFoundError(f"There is no client {client_id!r}.", "client_id")
            secret = None
            is_public = client.public if public is None else public
            if is_public:
                changes["secret_hash"] = None
            elif new_secret or client.secret_hash is None:
                secret = candidate_secret
                changes["secret_hash"] = hash_client_secret(secret)
            changes["public"] = is_public
            updated = dataclasses.replace(client, **changes, updated_at=now)  # type: ignore[arg-type]
            _store(connection, updated)
            return updated, secret

        return await self._db.write(update)

    def delete_client(self, client_id: str) -> Deferred[None]:
        def delete(connection: sqlite3.Connection) -> None:
            cursor = connection.execute(
                "DELETE FROM oidc_clients WHERE client_id = ?", (client_id,)
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"There is no client {client_id!r}.", "client_id")

        return self._db.write(delete)
