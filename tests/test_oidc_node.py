"""
Node's openid-client (from npm) against the provider on a real TLS
listener: discovery, the code flow with PKCE, and ID token signature checks
for RS256 and EdDSA, also with only the RSA key set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, TestCase

from tests.oidc_server import PASSWORD, REDIRECT_URI, OIDCServer, in_thread

NODE_DIRECTORY = Path(__file__).parent / "node"


def install_openid_client() -> None:
    """
    Install the npm packages of tests/node unless they are there.
    """
    if (NODE_DIRECTORY / "node_modules" / "openid-client").is_dir():
        return
    # npm ci installs exactly the versions of package-lock.json.
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=NODE_DIRECTORY,
        check=True,
        capture_output=True,
        timeout=600,
    )


def run_node(server: OIDCServer, clients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    Run flow.mjs with the given clients and return its results.
    """
    request = {
        "issuer": server.issuer,
        "redirect_uri": REDIRECT_URI,
        "username": "alice",
        "password": PASSWORD,
        "clients": clients,
    }
    environment = dict(os.environ, NODE_EXTRA_CA_CERTS=str(server.ca_file))
    completed = subprocess.run(
        ["node", "flow.mjs"],
        cwd=NODE_DIRECTORY,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(f"node failed: {completed.stderr}")
    results: list[dict[str, Any]] = json.loads(completed.stdout)
    return results


class OpenIDClientTests(TestCase):
    """
    openid-client discovers the issuer and completes the code flow.
    """

    timeout = 900

    async def setUp(self) -> None:  # type: ignore[override]
        if shutil.which("node") is None or shutil.which("npm") is None:
            raise SkipTest("node and npm are needed for the openid-client tests")
        await in_thread(install_openid_client)
        self.server = OIDCServer.start(self)
        user = await self.server.add_user("alice", display_name="Alice Smith")
        group = await self.server.directory.add_group("staff")
        await self.server.directory.add_member(group.id, user.id)

    async def _client(self, alg: str) -> dict[str, Any]:
        client, secret = await self.server.add_client(name=alg, signing_alg=alg)
        return {"id": client.client_id, "secret": secret}

    async def test_code_flow(self) -> None:
        """
        ID tokens signed RS256 and EdDSA validate against the full key set;
        RS256 tokens validate against the RSA-only set; claims and UserInfo
        match; refresh works.
        """
        rs256 = await self._client("RS256")
        eddsa = await self._client("EdDSA")
        rsa_only = await self._client("RS256")
        results = await in_thread(
            run_node,
            self.server,
            [
                {**rs256, "jwks": "jwks"},
                {**eddsa, "jwks": "jwks"},
                {**rsa_only, "jwks": "jwks_rsaonly"},
            ],
        )
        for result in results:
            self.assertTrue(result["ok"], result)
        self.assertEqual([r["alg"] for r in results], ["RS256", "EdDSA", "RS256"])
        published = {k["kid"]: k["alg"] for k in self.server.keys.jwks()["keys"]}
        for result in results:
            self.assertEqual(published[result["kid"]], result["alg"])
            claims = result["claims"]
            self.assertEqual(claims["sub"], "alice")
            self.assertEqual(claims["iss"], self.server.issuer)
            self.assertEqual(claims["email"], "alice@example.com")
            self.assertIs(claims["email_verified"], True)
            self.assertEqual(claims["groups"], ["staff"])
            self.assertEqual(claims["name"], "Alice Smith")
            self.assertEqual(claims["amr"], ["pwd"])
            userinfo = result["userinfo"]
            for name in ("sub", "email", "email_verified", "groups", "name"):
                self.assertEqual(userinfo[name], claims[name], name)
            self.assertEqual(result["refreshed_sub"], "alice")

    async def test_rsa_only_rejects_eddsa(self) -> None:
        """
        A client that knows only the RSA key set cannot validate an EdDSA
        token, so the check is real.
        """
        eddsa = await self._client("EdDSA")
        [result] = await in_thread(
            run_node, self.server, [{**eddsa, "jwks": "jwks_rsaonly"}]
        )
        self.assertFalse(result["ok"], result)
        self.assertIn("key", result["error"].lower(), result)
