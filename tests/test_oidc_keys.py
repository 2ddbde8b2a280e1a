"""
Tests for the signing key store.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from jwcrypto.common import JWException
from jwcrypto.jwk import JWK, JWKSet
from jwcrypto.jwt import JWT
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from idserver.oidc.keys import KeyStore, KeyStoreError


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class KeyStoreTests(SynchronousTestCase):
    """
    Key creation, publication, signing and rotation.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.directory = Path(self.mktemp()) / "keys"
        self.keys = KeyStore(self.directory, self.clock, retention=3600)

    def test_ensure_creates_private_files(self) -> None:
        """
        The first call creates one RSA and one Ed25519 key in files of mode
        0600; the second creates nothing.
        """
        created = self.keys.ensure_keys()
        self.assertEqual(len(created), 2)
        for kid in created:
            mode = stat.S_IMODE(os.stat(self.directory / f"{kid}.pem").st_mode)
            self.assertEqual(mode, 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.directory).st_mode), 0o700)
        self.assertEqual(self.keys.ensure_keys(), [])

    def test_kid_is_thumbprint(self) -> None:
        """
        Every published key carries its RFC 7638 thumbprint as kid, with use
        and alg.
        """
        self.keys.ensure_keys()
        published = self.keys.jwks()["keys"]
        self.assertEqual(sorted(k["alg"] for k in published), ["EdDSA", "RS256"])
        for entry in published:
            self.assertEqual(entry["use"], "sig")
            self.assertEqual(entry["kid"], JWK(**entry).thumbprint())
            self.assertNotIn("d", entry)

    def test_rsa_only(self) -> None:
        """
        The RSA-only set has just the RSA key.
        """
        self.keys.ensure_keys()
        published = self.keys.jwks(rsa_only=True)["keys"]
        self.assertEqual([k["kty"] for k in published], ["RSA"])

    def test_sign_and_verify(self) -> None:
        """
        Tokens signed with either algorithm verify against the published set
        and name the signing key.
        """
        self.keys.ensure_keys()
        keyset = JWKSet.from_json(json.dumps(self.keys.jwks()))
        for alg in ("RS256", "EdDSA"):
            token = self.keys.sign({"sub": "alice"}, alg)
            parsed = JWT(jwt=token, key=keyset, algs=[alg])
            self.assertIn("alice", parsed.claims)
            self.assertEqual(
                parsed.token.jose_header["kid"], self.keys.active_key(alg).kid
            )

    def test_rotate_keeps_retired_until_expiry(self) -> None:
        """
        After a rotation new tokens use the new keys, the old keys stay
        published for the token lifetime, and then they and their files go.
        """
        old = self.keys.ensure_keys()
        old_token = self.keys.sign({"sub": "alice"}, "RS256")
        new = self.keys.rotate()
        self.assertEqual(len(new), 2)
        kids = {k["kid"] for k in self.keys.jwks()["keys"]}
        self.assertEqual(kids, set(old) | set(new))
        self.assertIn(self.keys.active_key("RS256").kid, new)

        keyset = self.keys.verification_keys()
        JWT(jwt=old_token, key=keyset, algs=["RS256"])

        self.clock.now += 3600 + 301
        self.assertEqual({k["kid"] for k in self.keys.jwks()["keys"]}, set(new))
        self.assertRaises(
            JWException,
            JWT,
            jwt=old_token,
            key=self.keys.verification_keys(),
            algs=["RS256"],
        )
        self.keys.ensure_keys()
        for kid in old:
            self.assertFalse((self.directory / f"{kid}.pem").exists())

    def test_other_process_rotation_is_seen(self) -> None:
        """
        A rotation through another store on the same directory reaches this
        one.
        """
        self.keys.ensure_keys()
        before = self.keys.active_key("EdDSA").kid
        other = KeyStore(self.directory, self.clock, retention=3600)
        self.clock.now += 1
        other.rotate()
        self.assertNotEqual(self.keys.active_key("EdDSA").kid, before)

    def test_missing_key(self) -> None:
        """
        Signing without keys raises KeyStoreError.
        """
        self.assertRaises(KeyStoreError, self.keys.sign, {}, "RS256")

    def test_adopts_pem_file(self) -> None:
        """
        A PEM file copied into the directory is published under its
        thumbprint.
        """
        jwk = JWK.generate(kty="RSA", size=2048)
        self.directory.mkdir(parents=True)
        (self.directory / "copied.pem").write_bytes(
            jwk.export_to_pem(private_key=True, password=None)
        )
        self.assertEqual(self.keys.ensure_keys(), [self.keys.active_key("EdDSA").kid])
        self.assertEqual(self.keys.active_key("RS256").kid, jwk.thumbprint())


class KeyOwnerTests(SynchronousTestCase):
    """
    Key files created as root belong to the data directory's owner.
    """

    def test_owner(self) -> None:
        """
        As root, new key files take the owner of the data directory.
        """
        if os.geteuid() != 0:
            raise SkipTest("needs root to change file owners")
        data_dir = Path(self.mktemp())
        data_dir.mkdir()
        os.chown(data_dir, 12345, 12346)
        keys = KeyStore(data_dir / "keys", Clock(), retention=3600)
        keys.ensure_keys()
        for path in [data_dir / "keys", *(data_dir / "keys").iterdir()]:
            info = path.stat()
            self.assertEqual((info.st_uid, info.st_gid), (12345, 12346), path)
