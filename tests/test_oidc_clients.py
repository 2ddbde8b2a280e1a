"""
Tests for client registration and redirect URI matching.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from idserver.errors import NotFoundError, ValidationError
from idserver.interfaces import IClientRegistry
from idserver.oidc.clients import (
    SQLiteClientRegistry,
    check_client_secret,
    is_client_id,
    redirect_uri_matches,
    validate_redirect_uri,
)
from tests.oidc_fixtures import open_test_directory


class RedirectURITests(SynchronousTestCase):
    """
    Redirect URI validation and matching.
    """

    def test_valid(self) -> None:
        """
        https, loopback http, and custom schemes can be registered.
        """
        for uri in (
            "https://app.example.com/callback",
            "https://app.example.com:8443/oauth2/cb?x=1",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb",
            "com.example.app:/oauth2redirect",
            "myapp://callback",
        ):
            self.assertEqual(validate_redirect_uri(uri), uri)

    def test_invalid(self) -> None:
        """
        Relative URIs, fragments, script schemes, user info and spaces are
        rejected.
        """
        for uri in (
            "",
            "/callback",
            "callback",
            "https://app.example.com/cb#frag",
            "javascript:alert(1)",
            "data:text/html,x",
            "https:///cb",
            "https://user@app.example.com/cb",
            "https://app.example.com/c b",
            "https://app.example.com:99999/cb",
        ):
            self.assertRaises(ValidationError, validate_redirect_uri, uri)

    def test_exact_match(self) -> None:
        """
        Anything but the exact string fails for non-loopback URIs.
        """
        registered = "https://app.example.com/cb"
        self.assertTrue(redirect_uri_matches(registered, registered))
        for requested in (
            "https://app.example.com/cb/",
            "https://APP.example.com/cb",
            "https://app.example.com/cb?x=1",
            "https://app.example.com:443/cb",
            "http://app.example.com/cb",
            "https://app.example.com/cb#x",
        ):
            self.assertFalse(redirect_uri_matches(registered, requested), requested)

    def test_loopback_port_varies(self) -> None:
        """
        The port of a registered loopback http URI may vary; host, path and
        query may not.
        """
        self.assertTrue(
            redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:53124/cb")
        )
        self.assertTrue(
            redirect_uri_matches("http://127.0.0.1:8000/cb", "http://127.0.0.1/cb")
        )
        self.assertTrue(redirect_uri_matches("http://[::1]:1/cb", "http://[::1]:2/cb"))
        for requested in (
            "http://127.0.0.1:5/other",
            "http://127.0.0.2:5/cb",
            "http://[::1]:5/cb",
            "https://127.0.0.1:5/cb",
            "http://localhost:5/cb",
            "http://127.0.0.1:5/cb?x=1",
            "http://127.0.0.1:5@evil.example/cb",
            "http://127.0.0.1:x/cb",
        ):
            self.assertFalse(
                redirect_uri_matches("http://127.0.0.1/cb", requested), requested
            )

    def test_loopback_rest_exact(self) -> None:
        """
        Apart from the port, a loopback URI matches character for character:
        characters that URL parsers drop (tab, CR, LF), an empty query and
        other spellings of the port do not match.
        """
        registered = "http://127.0.0.1/cb"
        for requested in (
            "http://127.0.0.1:5/cb\t",
            "http://127.0.0.1:5/cb\n",
            "http://127.0.0.1:5/c\rb",
            "http://12\n7.0.0.1:5/cb",
            "http://127.0.0.1:5/cb?",
            "http://127.0.0.1/cb?",
            "http://127.0.0.1:05/cb",
            "http://127.0.0.1:0/cb",
            "http://127.0.0.1:65536/cb",
            "http://127.0.0.1:+5/cb",
            "http://127.0.0.1:/cb",
            "HTTP://127.0.0.1:5/cb",
        ):
            self.assertFalse(redirect_uri_matches(registered, requested), requested)
        self.assertTrue(redirect_uri_matches(registered, "http://127.0.0.1:65535/cb"))
        self.assertTrue(
            redirect_uri_matches("http://[::1]/cb?a=1", "http://[::1]:80/cb?a=1")
        )

    @given(st.text(max_size=60))
    def test_no_false_match(self, suffix: str) -> None:
        """
        A URI that differs from a registered https URI never matches.
        """
        registered = "https://app.example.com/cb"
        requested = registered + suffix
        self.assertEqual(redirect_uri_matches(registered, requested), suffix == "")

    @given(st.integers(min_value=1, max_value=65535), st.text(max_size=20))
    def test_loopback_only_port(self, port: int, path: str) -> None:
        """
        A loopback match with another port implies the same path.
        """
        requested = f"http://127.0.0.1:{port}/cb{path}"
        matches = redirect_uri_matches("http://127.0.0.1/cb", requested)
        self.assertEqual(matches, path == "")


class SQLiteClientRegistryTests(TestCase):
    """
    The SQLite client registry.
    """

    def setUp(self) -> None:
        self.registry = SQLiteClientRegistry(open_test_directory(self).database)

    def test_interface(self) -> None:
        """
        The registry provides IClientRegistry.
        """
        self.assertTrue(verifyObject(IClientRegistry, self.registry))

    async def test_add_confidential(self) -> None:
        """
        A confidential client gets an id and a secret stored only as a hash.
        """
        client, secret = await self.registry.add_client(
            "Grafana",
            ["https://grafana.example/login/generic_oauth"],
            post_logout_redirect_uris=["https://grafana.example/"],
            allowed_group_ids=["gid-b", "gid-a", "gid-a"],
        )
        self.assertTrue(is_client_id(client.client_id))
        self.assertIsNotNone(secret)
        assert secret is not None
        self.assertGreaterEqual(len(secret), 43)
        self.assertNotIn(secret, repr(client))
        self.assertTrue(check_client_secret(client, secret))
        self.assertFalse(check_client_secret(client, secret + "x"))
        self.assertEqual(client.allowed_group_ids, ("gid-a", "gid-b"))
        self.assertEqual(await self.registry.get_client(client.client_id), client)

    async def test_add_public(self) -> None:
        """
        A public client has no secret, so no secret matches.
        """
        client, secret = await self.registry.add_client(
            "CLI", ["http://127.0.0.1/cb"], public=True, signing_alg="EdDSA"
        )
        self.assertIsNone(secret)
        self.assertTrue(client.public)
        self.assertEqual(client.signing_alg, "EdDSA")
        self.assertFalse(check_client_secret(client, ""))

    async def test_add_invalid(self) -> None:
        """
        Bad URIs, algorithms and names fail through the Deferred.
        """
        with self.assertRaises(ValidationError):
            await self.registry.add_client("x", ["javascript:alert(1)"])
        with self.assertRaises(ValidationError):
            await self.registry.add_client("x", [])
        with self.assertRaises(ValidationError):
            await self.registry.add_client(
                "x", ["https://a.example/"], signing_alg="HS256"
            )
        with self.assertRaises(ValidationError):
            await self.registry.add_client(" ", ["https://a.example/"])
        self.assertEqual(await self.registry.list_clients(), [])

    async def test_update(self) -> None:
        """
        Updates change the given fields; a new secret replaces the old one.
        """
        client, secret = await self.registry.add_client("A", ["https://a.example/"])
        updated, new_secret = await self.registry.update_client(
            client.client_id, name="B", launch_url="https://a.example/app"
        )
        self.assertIsNone(new_secret)
        self.assertEqual(updated.name, "B")
        self.assertEqual(updated.redirect_uris, client.redirect_uris)
        self.assertEqual(updated.launch_url, "https://a.example/app")

        rotated, new_secret = await self.registry.update_client(
            client.client_id, new_secret=True, launch_url=""
        )
        assert new_secret is not None and secret is not None
        self.assertTrue(check_client_secret(rotated, new_secret))
        self.assertFalse(check_client_secret(rotated, secret))
        self.assertIsNone(rotated.launch_url)

    async def test_public_to_confidential(self) -> None:
        """
        A public client made confidential gets a secret, and back again
        loses it.
        """
        client, _ = await self.registry.add_client(
            "A", ["https://a.example/"], public=True
        )
        confidential, secret = await self.registry.update_client(
            client.client_id, public=False
        )
        assert secret is not None
        self.assertTrue(check_client_secret(confidential, secret))
        public, _ = await self.registry.update_client(client.client_id, public=True)
        self.assertIsNone(public.secret_hash)

    async def test_list_and_delete(self) -> None:
        """
        Clients list by name; deleted ones are gone; unknown ids fail.
        """
        b, _ = await self.registry.add_client("b", ["https://b.example/"])
        a, _ = await self.registry.add_client("A", ["https://a.example/"])
        self.assertEqual(await self.registry.list_clients(), [a, b])
        await self.registry.delete_client(a.client_id)
        self.assertIsNone(await self.registry.get_client(a.client_id))
        with self.assertRaises(NotFoundError):
            await self.registry.delete_client(a.client_id)
        with self.assertRaises(NotFoundError):
            await self.registry.update_client(a.client_id, name="x")
