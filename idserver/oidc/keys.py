"""
The signing keys of ID tokens: PEM files in C{<data_dir>/keys/}.

There is one active RSA key (RS256) and one active Ed25519 key (EdDSA).
Each key's C{kid} is its RFC 7638 thumbprint (SHA-256). The file
C{keys.json} beside the PEM files records when each key was created and
retired. A rotation creates new active keys and retires the old ones. A retired
key stays published in the JWKS until every ID token it signed has
expired, and then its file is deleted.

The daemon and C{idserver-admin} share the directory: changes are made
under an exclusive C{flock} on C{.lock}, C{keys.json} is replaced
atomically, and a L{KeyStore} rereads it whenever its modification time
changes, so a rotation by the command line reaches a running daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto.jwk import JWK, JWKSet
from jwcrypto.jwt import JWT
from twisted.logger import Logger

__all__ = ["KeyStoreError", "KeyStore", "SigningKey"]

_MANIFEST = "keys.json"
_LOCK = ".lock"

# How long a retired key stays published after the longest-lived token it
# could have signed expires, for clocks that run a little behind.
_CLOCK_SKEW = 300.0

_KEY_TYPES = {"RS256": "RSA", "EdDSA": "OKP"}


class KeyStoreError(Exception):
    """
    The key directory is unusable: unreadable files, a broken manifest, or
    no active key for an algorithm.
    """


@dataclass(frozen=True)
class SigningKey:
    """
    One key pair and its life cycle.

    @ivar alg: C{RS256} or C{EdDSA}.
    @ivar retired_at: when a rotation replaced it, or C{None} while active.
    """

    kid: str
    alg: str
    jwk: JWK
    created_at: float
    retired_at: float | None

    def public_jwk(self) -> dict[str, Any]:
        """
        Return the public key as a JWK with C{kid}, C{use} and C{alg}.
        """
        public: dict[str, Any] = self.jwk.export_public(as_dict=True)
        public.update(kid=self.kid, use="sig", alg=self.alg)
        return public


def _generate(alg: str) -> JWK:
    if alg == "RS256":
        return JWK.generate(kty="RSA", size=2048)
    return JWK.generate(kty="OKP", crv="Ed25519")


def _algorithm_of(jwk: JWK) -> str:
    if jwk.get("kty") == "RSA":
        return "RS256"
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return "EdDSA"
    raise KeyStoreError(
        f"Unsupported key type {jwk.get('kty')!r} in the key directory."
    )


class KeyStore:
    """
    The signing keys in one directory.

    @param directory: C{<data_dir>/keys}.
    @param seconds: returns the current POSIX time.
    @param retention: how long ID tokens live, in seconds: the time a
        retired key stays published.
    """

    log = Logger()

    def __init__(
        self, directory: Path, seconds: Callable[[], float], retention: float
    ) -> None:
        self.directory = directory
        self._seconds = seconds
        self._retention = retention
        self._keys: list[SigningKey] = []
        self._loaded_mtime: int | None = None

    # Changing the directory

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)
        self._give_to_data_dir_owner()

    def _give_to_data_dir_owner(self) -> None:
        """
        When run as root (C{idserver-admin} with sudo), hand the key files
        to the owner of the data directory, so a daemon running as that
        user can still read them.
        """
        if os.geteuid() != 0:
            return
        owner = self.directory.parent.stat()
        if owner.st_uid == 0:
            return
        for path in [self.directory, *self.directory.iterdir()]:
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)

    def ensure_keys(self) -> list[str]:
        """
        Create an active key for each algorithm that has none.

        @return: the ids of the keys created.
        """
        with self._locked():
            entries = self._read_manifest(adopt=True)
            created = []
            for alg in _KEY_TYPES:
                active = [e for e in entries if e["alg"] == alg]
                if all(e["retired_at"] is not None for e in active):
                    created.append(self._create(alg, entries))
            self._prune(entries, self._seconds())
            self._write_manifest(entries)
        self._reload()
        return created

    def rotate(self) -> list[str]:
        """
        Create new active keys for every algorithm and retire the old ones.

        @return: the ids of the new keys.
        """
        now = self._seconds()
        with self._locked():
            entries = self._read_manifest(adopt=True)
            for entry in entries:
                if entry["retired_at"] is None:
                    entry["retired_at"] = now
            created = [self._create(alg, entries) for alg in _KEY_TYPES]
            self._prune(entries, now)
            self._write_manifest(entries)
        self._reload()
        return created

    def _create(self, alg: str, entries: list[dict[str, Any]]) -> str:
        jwk = _generate(alg)
        kid = jwk.thumbprint()
        pem = jwk.export_to_pem(private_key=True, password=None)
        descriptor = os.open(
            self.directory / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        with os.fdopen(descriptor, "wb") as f:
            f.write(pem)
        entries.append(
            {"kid": kid, "alg": alg, "created_at": self._seconds(), "retired_at": None}
        )
        self.log.info("Created {alg} signing key {kid}", alg=alg, kid=kid)
        return kid

    def _prune(self, entries: list[dict[str, Any]], now: float) -> None:
        for entry in list(entries):
            retired_at = entry["retired_at"]
            if retired_at is not None and now > retired_at + self._published_for:
                entries.remove(entry)
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f"{entry['kid']}.pem").unlink()
                self.log.info("Deleted retired signing key {kid}", kid=entry["kid"])

    @property
    def _published_for(self) -> float:
        return self._retention + _CLOCK_SKEW

    def _read_manifest(self, adopt: bool = False) -> list[dict[str, Any]]:
        """
        Read C{keys.json}. With C{adopt} (only under the lock), add an
        entry for each PEM file it lacks: a key copied in by hand counts as
        active, and its file is renamed to its C{kid}.
        """
        path = self.directory / _MANIFEST
        try:
            data = json.loads(path.read_text())
            entries: list[dict[str, Any]] = list(data["keys"])
        except FileNotFoundError:
            entries = []
        except (ValueError, KeyError, TypeError) as e:
            raise KeyStoreError(f"The key manifest {path} is invalid: {e}") from None

        known = {entry["kid"] for entry in entries}
        if not adopt:
            return entries
        for pem in sorted(self.directory.glob("*.pem")):
            if pem.stem in known:
                continue
            jwk = self._load_pem(pem)
            entries.append(
                {
                    "kid": jwk.thumbprint(),
                    "alg": _algorithm_of(jwk),
                    "created_at": pem.stat().st_mtime,
                    "retired_at": None,
                }
            )
            if pem.stem != jwk.thumbprint():
                pem.rename(self.directory / f"{jwk.thumbprint()}.pem")
        return entries

    def _write_manifest(self, entries: list[dict[str, Any]]) -> None:
        path = self.directory / _MANIFEST
        temporary = self.directory / f".{_MANIFEST}.{os.getpid()}"
        temporary.write_text(json.dumps({"keys": entries}, indent=2) + "\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)

    @staticmethod
    def _load_pem(path: Path) -> JWK:
        try:
            return JWK.from_pem(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as e:
            raise KeyStoreError(f"Cannot read the signing key {path}: {e}") from None

    # Reading

    def _reload(self) -> None:
        try:
            mtime = (self.directory / _MANIFEST).stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime is not None and mtime == self._loaded_mtime:
            return
        keys = []
        for entry in self._read_manifest():
            path = self.directory / f"{entry['kid']}.pem"
            if not path.exists():
                self.log.warn(
                    "Signing key {kid} is listed but its file {path} is missing",
                    kid=entry["kid"],
                    path=str(path),
                )
                continue
            keys.append(
                SigningKey(
                    kid=entry["kid"],
                    alg=entry["alg"],
                    jwk=self._load_pem(path),
                    created_at=entry["created_at"],
                    retired_at=entry["retired_at"],
                )
            )
        self._keys = keys
        self._loaded_mtime = mtime

    def keys(self) -> list[SigningKey]:
        """
        Return the published keys: the active ones, and retired ones whose
        tokens may still be valid.
        """
        self._reload()
        now = self._seconds()
        return [
            key
            for key in self._keys
            if key.retired_at is None or now <= key.retired_at + self._published_for
        ]

    def active_key(self, alg: str) -> SigningKey:
        """
        Return the newest active key for C{alg}.

        @raise KeyStoreError: there is none; run C{idserver-admin init} or start
            the daemon, which create missing keys.
        """
        active = [k for k in self.keys() if k.alg == alg and k.retired_at is None]
        if not active:
            raise KeyStoreError(
                f"No active {alg} signing key in {self.directory}; start the"
                " daemon or run 'idserver-admin keys rotate' to create one."
            )
        return max(active, key=lambda k: k.created_at)

    def jwks(self, *, rsa_only: bool = False) -> dict[str, Any]:
        """
        Return the published public keys as a JWK set, active keys first.
        """
        keys = sorted(self.keys(), key=lambda k: (k.retired_at is not None, k.alg))
        return {
            "keys": [
                key.public_jwk() for key in keys if not rsa_only or key.alg == "RS256"
            ]
        }

    def verification_keys(self) -> JWKSet:
        """
        Return the published keys as a L{JWKSet} for checking signatures.
        """
        keyset = JWKSet()
        for key in self.keys():
            keyset.add(JWK(**key.public_jwk()))
        return keyset

    def sign(self, claims: dict[str, Any], alg: str) -> str:
        """
        Sign C{claims} as a compact JWT with the active key for C{alg}.
        """
        key = self.active_key(alg)
        token = JWT(header={"alg": alg, "kid": key.kid, "typ": "JWT"}, claims=claims)
        token.make_signed_token(key.jwk)
        serialized: str = token.serialize()
        return serialized
