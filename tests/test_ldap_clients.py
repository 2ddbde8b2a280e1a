"""
End-to-end tests of the LDAP server: the real server on loopback ports over
a real SQLite directory, talked to by independent clients: C{ldapsearch}
(OpenLDAP's command line tools, as subprocesses), python-ldap and ldap3
(blocking, in threads, so the reactor keeps serving).
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import ldap
import ldap3
import pyotp
from ldap.filter import escape_filter_chars
from twisted.internet import defer
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from idserver.ldap.access import (
    ALLOWLIST_KEY,
    ENABLED_KEY,
    SECRET_HASH_KEY,
    hash_generated_secret,
)
from idserver.ldap.backend import LDAPBackend
from idserver.ldap.server import LDAPServerFactory
from idserver.model import User
from idserver.tls import certificate_options, create_self_signed_certificate

from .ldaphelpers import TestDirectory, open_test_directory

_T = TypeVar("_T")

SUFFIX = "dc=cloudron"
USERS = "ou=users,dc=cloudron"
GROUPS = "ou=groups,dc=cloudron"
ADMIN = "cn=admin,ou=system,dc=cloudron"
SECRET = "Xq2w9-admin-secret-for-tests"
PASSWORD = "correct horse battery"

LDAPSEARCH = "/usr/bin/ldapsearch"


def get_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def client_environment() -> dict[str, str]:
    """
    The environment of OpenLDAP's tools: no user configuration file, and
    the self-signed certificate accepted.
    """
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "LDAPTLS_REQCERT": "never",
    }


class LiveServerTestBase(TestCase):
    """
    Starts the LDAP server with LDAPS and StartTLS listeners on loopback
    ports over a fresh directory holding a few users.
    """

    max_entries = 1000

    async def setUp(self) -> None:  # type: ignore[override]
        reactor = get_reactor()
        base = self.make_base()
        self.store: TestDirectory = open_test_directory(reactor, str(base))
        self.addCleanup(self.store.close)
        directory = self.directory = self.store.directory

        self.alice = await directory.add_user(
            "alice",
            "alice@example.com",
            display_name="Alice Liddell",
            fallback_email="alice@elsewhere.example",
            password=PASSWORD,
        )
        self.bob = await directory.add_user(
            "bob", "bob@example.com", display_name="Bob (builder) *", password=PASSWORD
        )
        self.bob_secret = await directory.enable_totp(self.bob.id)
        self.carol = await directory.add_user(
            "carol", "carol@example.com", password=PASSWORD, active=False
        )
        admins = await directory.add_group("admins")
        await directory.add_member(admins.id, self.alice.id)
        await directory.add_member(admins.id, self.bob.id)
        await directory.set_setting(ENABLED_KEY, True)
        await directory.set_setting(ALLOWLIST_KEY, ["127.0.0.1", "::1 # loopback"])
        await directory.set_setting(SECRET_HASH_KEY, hash_generated_secret(SECRET))

        certificate, key = base / "certificate.pem", base / "key.pem"
        create_self_signed_certificate(certificate, key)
        options = certificate_options(certificate, key)
        self.backend = LDAPBackend(reactor, directory, suffix=SUFFIX)
        plain = LDAPServerFactory(
            self.backend, reactor, starttls=options, max_entries=self.max_entries
        )
        secure = LDAPServerFactory(self.backend, reactor, max_entries=self.max_entries)
        plain_port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            plain
        )
        secure_port = await SSL4ServerEndpoint(
            reactor, 0, options, interface="127.0.0.1"
        ).listen(secure)
        self.addCleanup(plain_port.stopListening)
        self.addCleanup(secure_port.stopListening)
        self.addCleanup(self.close_connections, plain, secure)
        self.plain_factory, self.secure_factory = plain, secure
        self.ldap_url = f"ldap://127.0.0.1:{plain_port.getHost().port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{secure_port.getHost().port}"
        self.plain_port = plain_port.getHost().port
        self.secure_port = secure_port.getHost().port

    def make_base(self) -> Path:
        base = Path(self.mktemp()).absolute()
        base.mkdir(parents=True)
        return base

    async def close_connections(self, *factories: LDAPServerFactory) -> None:
        # The clients' threads have finished; connections they left open
        # (python-ldap closes a failed connection only when collected) are
        # closed from this side.
        for factory in factories:
            for connection in list(factory.connections):
                connection.abort()
            factory.stopFactory()
        await self.sleep(0.01)

    def sleep(self, seconds: float) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._sleep(seconds))

    async def _sleep(self, seconds: float) -> None:
        reactor = get_reactor()
        waiting: defer.Deferred[None] = defer.Deferred()
        reactor.callLater(seconds, waiting.callback, None)
        await waiting

    def dn(self, user: User) -> str:
        return f"cn={user.id},{USERS}"

    async def in_thread(self, function: Callable[..., _T], *args: Any) -> _T:
        result: _T = await deferToThread(function, *args)
        return result

    def python_ldap(self, url: str | None = None, starttls: bool = False) -> Any:
        """
        Open a python-ldap connection (blocking) that accepts the
        self-signed certificate.
        """
        connection = ldap.initialize(url or self.ldap_url)
        connection.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        connection.set_option(ldap.OPT_REFERRALS, 0)
        connection.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_NEVER)
        connection.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        if starttls:
            connection.start_tls_s()
        return connection

    def python_ldap_bind(self, dn: str, password: str, **options: Any) -> Any:
        connection = self.python_ldap(**options)
        connection.simple_bind_s(dn, password)
        return connection

    async def ldapsearch(self, *arguments: str) -> tuple[int, str, str]:
        """
        Run C{ldapsearch} and return its exit code, output and errors.
        """
        out, err, code = await getProcessOutputAndValue(
            LDAPSEARCH, arguments, env=client_environment(), reactor=get_reactor()
        )
        return code, out.decode("utf-8"), err.decode("utf-8")

    def admin_arguments(self, url: str | None = None) -> list[str]:
        return ["-x", "-H", url or self.ldap_url, "-D", ADMIN, "-w", SECRET]


def entries_of(ldif: str) -> list[str]:
    return [line[4:] for line in ldif.splitlines() if line.startswith("dn: ")]


class LDAPSearchTests(LiveServerTestBase):
    """
    Tests with OpenLDAP's C{ldapsearch}.
    """

    async def test_ldaps_lists_users(self) -> None:
        """
        Over LDAPS, the admin DN lists every active user with its
        attributes.
        """
        code, out, err = await self.ldapsearch(
            *self.admin_arguments(self.ldaps_url), "-b", USERS, "(objectClass=user)"
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(
            sorted(entries_of(out)), sorted(self.dn(u) for u in (self.alice, self.bob))
        )
        for line in [
            "username: alice",
            "sAMAccountName: alice",
            "mail: alice@example.com",
            "mailAlternateAddress: alice@elsewhere.example",
            "displayName: Alice Liddell",
            "givenName: Alice",
            "sn: Liddell",
            f"memberOf: cn=admins,{GROUPS}",
            "homeDirectory: /home/alice",
            "loginShell: /bin/sh",
            "objectClass: inetOrgPerson",
        ]:
            self.assertIn(line, out)
        self.assertNotIn("entryUUID", out)
        self.assertNotIn("assword", out)

    async def test_starttls(self) -> None:
        """
        The same search works on the plain port after StartTLS (C{-ZZ}).
        """
        code, out, err = await self.ldapsearch(
            "-ZZ", *self.admin_arguments(), "-b", USERS, "(username=alice)", "mail"
        )
        self.assertEqual(code, 0, err)
        self.assertIn("mail: alice@example.com", out)

    async def test_paging(self) -> None:
        """
        C{-E pr=100/noprompt} pages through 1,000 users.
        """
        for i in range(1000):
            await self.directory.add_user(f"paged{i:04d}", f"paged{i:04d}@example.com")
        code, out, err = await self.ldapsearch(
            *self.admin_arguments(),
            "-b",
            USERS,
            "-E",
            "pr=100/noprompt",
            "(username=paged*)",
            "username",
        )
        self.assertEqual(code, 0, err)
        usernames = [line for line in out.splitlines() if line.startswith("username: ")]
        self.assertEqual(len(usernames), 1000)
        self.assertEqual(len(set(usernames)), 1000)
        self.assertEqual(out.count("# search result"), 10)

    async def test_size_limit(self) -> None:
        """
        C{-z} stops with sizeLimitExceeded after that many entries.
        """
        await self.directory.add_user("dave", "dave@example.com")
        code, out, _ = await self.ldapsearch(
            *self.admin_arguments(), "-z", "2", "-b", USERS, "(objectClass=user)"
        )
        self.assertEqual(code, 4)
        self.assertEqual(len(entries_of(out)), 2)
        self.assertIn("result: 4 Size limit exceeded", out)

    async def test_root_dse(self) -> None:
        """
        Anonymously, the root DSE lists the naming context, the version,
        the paged results control and the extended operations.
        """
        code, out, err = await self.ldapsearch(
            "-x", "-H", self.ldap_url, "-b", "", "-s", "base", "+"
        )
        self.assertEqual(code, 0, err)
        for line in [
            f"namingContexts: {SUFFIX}",
            "supportedLDAPVersion: 3",
            "supportedControl: 1.2.840.113556.1.4.319",
            "supportedExtension: 1.3.6.1.4.1.1466.20037",
            "supportedExtension: 1.3.6.1.4.1.4203.1.11.3",
        ]:
            self.assertIn(line, out)

    async def test_anonymous_limited(self) -> None:
        """
        Anonymous sessions cannot search the tree.
        """
        code, out, _ = await self.ldapsearch("-x", "-H", self.ldap_url, "-b", USERS)
        self.assertEqual(code, 50)
        self.assertEqual(entries_of(out), [])

    async def test_missing_base(self) -> None:
        """
        A base-scope search of a missing DN is noSuchObject with the
        matched DN.
        """
        code, out, _ = await self.ldapsearch(
            *self.admin_arguments(), "-b", f"cn=nobody,{USERS}", "-s", "base"
        )
        self.assertEqual(code, 32)
        self.assertIn(f"matchedDN: {USERS}", out)

    async def test_not_present(self) -> None:
        """
        A presence filter under NOT selects entries without the attribute.
        """
        code, out, err = await self.ldapsearch(
            *self.admin_arguments(),
            "-b",
            USERS,
            "(&(objectClass=user)(!(mailAlternateAddress=*)))",
            "1.1",
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(entries_of(out), [self.dn(self.bob)])

    async def test_escapes_and_case(self) -> None:
        """
        Escaped characters in filters are literal and values compare
        without case.
        """
        code, out, err = await self.ldapsearch(
            *self.admin_arguments(),
            "-b",
            USERS,
            r"(displayName=BOB \28BUILDER\29 \2a)",
            "1.1",
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(entries_of(out), [self.dn(self.bob)])
        code, out, _ = await self.ldapsearch(
            *self.admin_arguments(), "-b", USERS, r"(displayName=bob \2a)", "1.1"
        )
        self.assertEqual(entries_of(out), [])

    async def test_changes_visible(self) -> None:
        """
        A user added to the directory is found by the next search.
        """
        code, out, _ = await self.ldapsearch(
            *self.admin_arguments(), "-b", USERS, "(username=dave)"
        )
        self.assertEqual(entries_of(out), [])
        await self.directory.add_user("dave", "dave@example.com")
        code, out, _ = await self.ldapsearch(
            *self.admin_arguments(), "-b", USERS, "(username=dave)"
        )
        self.assertEqual(len(entries_of(out)), 1)

    async def test_disabled_users_hidden(self) -> None:
        """
        A disabled user is in no search result and no group's member or
        memberUid values, and comes back when enabled again.
        """
        admins = f"cn=admins,{GROUPS}"
        await self.directory.update_user(self.alice.id, active=False)

        code, out, err = await self.ldapsearch(
            *self.admin_arguments(), "-b", SUFFIX, "(objectClass=*)", "*", "+"
        )
        self.assertEqual(code, 0, err)
        self.assertNotIn(self.alice.id, out)
        self.assertNotIn("alice", out)
        self.assertNotIn(self.dn(self.carol), entries_of(out))
        self.assertIn(f"member: {self.dn(self.bob)}", out)
        self.assertIn(f"memberUid: {self.bob.id}", out)

        for query in [
            "(username=alice)",
            "(mail=alice@example.com)",
            f"(memberOf={admins})",
            f"(entryUUID={self.alice.id.removeprefix('uid-')})",
        ]:
            code, out, err = await self.ldapsearch(
                *self.admin_arguments(), "-b", USERS, query, "1.1"
            )
            self.assertEqual(code, 0, err)
            expected = [self.dn(self.bob)] if "memberOf" in query else []
            self.assertEqual(entries_of(out), expected, query)

        code, out, _ = await self.ldapsearch(
            *self.admin_arguments(), "-b", self.dn(self.alice), "-s", "base"
        )
        self.assertEqual(code, 32)
        self.assertIn(f"matchedDN: {USERS}", out)

        await self.directory.update_user(self.alice.id, active=True)
        code, out, err = await self.ldapsearch(
            *self.admin_arguments(), "-b", admins, "-s", "base", "member"
        )
        self.assertEqual(code, 0, err)
        self.assertIn(f"member: {self.dn(self.alice)}", out)


class PythonLDAPTests(LiveServerTestBase):
    """
    Tests with python-ldap.
    """

    max_entries = 3

    async def test_bind_forms(self) -> None:
        """
        A user binds with every accepted DN form, and Who am I? names the
        user's entry.
        """
        alice = self.alice
        for dn in [
            self.dn(alice),
            f"cn=alice,{USERS}",
            "CN=Alice, OU=Users, DC=Cloudron",
            f"cn=alice@example.com,{USERS}",
            f"mail=ALICE@example.com,{USERS}",
            f"uid=alice,{USERS}",
        ]:
            with self.subTest(dn=dn):

                def bind_and_ask(dn: str = dn) -> str:
                    connection = self.python_ldap_bind(dn, PASSWORD)
                    try:
                        return str(connection.whoami_s())
                    finally:
                        connection.unbind_s()

                self.assertEqual(
                    await self.in_thread(bind_and_ask), f"dn:{self.dn(alice)}"
                )

    async def test_bind_failures(self) -> None:
        """
        Wrong passwords, inactive and unknown users, and DNs outside the
        users get invalidCredentials; an empty password gets
        unwillingToPerform.
        """
        cases: list[tuple[str, str, type[Exception]]] = [
            (f"cn=alice,{USERS}", "wrong password", ldap.INVALID_CREDENTIALS),
            (f"cn=carol,{USERS}", PASSWORD, ldap.INVALID_CREDENTIALS),
            (f"cn=nobody,{USERS}", PASSWORD, ldap.INVALID_CREDENTIALS),
            (f"cn=alice,ou=people,{SUFFIX}", PASSWORD, ldap.INVALID_CREDENTIALS),
            (ADMIN, "wrong secret", ldap.INVALID_CREDENTIALS),
            (f"cn=alice,{USERS}", "", ldap.UNWILLING_TO_PERFORM),
        ]
        for dn, password, error in cases:
            with self.subTest(dn=dn):

                def bind(dn: str = dn, password: str = password) -> None:
                    self.python_ldap_bind(dn, password)

                await self.assertFailure(deferToThread(bind), error)

    async def test_disabled_while_bound(self) -> None:
        """
        A connection bound as a user who is then disabled is anonymous for
        Who am I?, gets insufficientAccessRights for searches and compares,
        and can still read the root DSE.
        """
        connection = await self.in_thread(
            self.python_ldap_bind, f"uid=alice,{USERS}", PASSWORD
        )
        self.addCleanup(connection.unbind_s)

        def search() -> list[Any]:
            result: list[Any] = connection.search_s(
                USERS, ldap.SCOPE_ONELEVEL, "(username=bob)", ["1.1"]
            )
            return result

        self.assertEqual(len(await self.in_thread(search)), 1)
        self.assertTrue((await self.in_thread(connection.whoami_s)).startswith("dn:"))
        await self.directory.update_user(self.alice.id, active=False)
        self.assertEqual(await self.in_thread(connection.whoami_s), "")
        await self.assertFailure(deferToThread(search), ldap.INSUFFICIENT_ACCESS)

        def compare() -> bool:
            return bool(connection.compare_s(self.dn(self.bob), "username", "bob"))

        await self.assertFailure(deferToThread(compare), ldap.INSUFFICIENT_ACCESS)

        def root() -> list[Any]:
            result: list[Any] = connection.search_s(
                "", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"]
            )
            return result

        self.assertEqual(len(await self.in_thread(root)), 1)

    async def test_totp(self) -> None:
        """
        A TOTP code in the bind DN is checked, and accepted once; with
        ldap_require_2fa a user with 2FA must give one.
        """
        totp = pyotp.TOTP(self.bob_secret)
        code = totp.now()
        wrong = f"{(int(code) + 1) % 1000000:06d}"

        def bind(dn: str) -> None:
            self.python_ldap_bind(dn, PASSWORD).unbind_s()

        await self.assertFailure(
            deferToThread(bind, f"cn=bob+totpToken={wrong},{USERS}"),
            ldap.INVALID_CREDENTIALS,
        )
        await self.in_thread(bind, f"cn=bob+totpToken={code},{USERS}")
        await self.assertFailure(
            deferToThread(bind, f"cn=bob+totpToken={code},{USERS}"),
            ldap.INVALID_CREDENTIALS,
        )
        await self.in_thread(bind, f"cn=bob,{USERS}")
        await self.directory.set_setting("ldap_require_2fa", True)
        await self.assertFailure(
            deferToThread(bind, f"cn=bob,{USERS}"), ldap.INVALID_CREDENTIALS
        )
        await self.in_thread(bind, f"cn=alice,{USERS}")

    async def test_rate_limit(self) -> None:
        """
        After repeated failures for a user, even the right password fails.
        """

        def bind(password: str) -> None:
            self.python_ldap_bind(f"uid=alice,{USERS}", password).unbind_s()

        for _ in range(5):
            await self.assertFailure(
                deferToThread(bind, "wrong password"), ldap.INVALID_CREDENTIALS
            )
        await self.assertFailure(
            deferToThread(bind, PASSWORD), ldap.INVALID_CREDENTIALS
        )
        events = await self.directory.events(kind="login.failed")
        self.assertIn("too many failed attempts", events[0].detail)
        self.assertEqual(events[0].address, "127.0.0.1")

    async def test_writes_refused(self) -> None:
        """
        Modify, add, delete and rename get unwillingToPerform.
        """
        dn = self.dn(self.alice)

        def attempt(operation: str) -> None:
            connection = self.python_ldap_bind(ADMIN, SECRET)
            if operation == "modify":
                connection.modify_s(
                    dn, [(ldap.MOD_REPLACE, "mail", [b"x@example.com"])]
                )
            elif operation == "add":
                connection.add_s(f"cn=new,{USERS}", [("objectClass", [b"top"])])
            elif operation == "delete":
                connection.delete_s(dn)
            else:
                connection.rename_s(dn, "cn=renamed")

        for operation in ["modify", "add", "delete", "rename"]:
            with self.subTest(operation=operation):
                await self.assertFailure(
                    deferToThread(attempt, operation), ldap.UNWILLING_TO_PERFORM
                )

    async def test_missing_base(self) -> None:
        """
        A missing base reports the matched DN.
        """

        def search() -> None:
            connection = self.python_ldap_bind(ADMIN, SECRET)
            connection.search_s(f"cn=x,cn=nobody,{USERS}", ldap.SCOPE_BASE)

        error = await self.assertFailure(deferToThread(search), ldap.NO_SUCH_OBJECT)
        self.assertEqual(error.args[0]["matched"], USERS)

    async def test_server_size_limit(self) -> None:
        """
        An unpaged search stops at the server's maximum with
        sizeLimitExceeded; a paged one walks past it.
        """
        for i in range(5):
            await self.directory.add_user(f"extra{i}", f"extra{i}@example.com")

        def unpaged() -> list[Any]:
            connection = self.python_ldap_bind(ADMIN, SECRET)
            message_id = connection.search(
                USERS, ldap.SCOPE_ONELEVEL, "(objectClass=user)"
            )
            results: list[Any] = []
            try:
                while True:
                    kind, data = connection.result(message_id, 0)
                    if kind == ldap.RES_SEARCH_RESULT:
                        return results
                    results.extend(data)
            except ldap.SIZELIMIT_EXCEEDED:
                return results

        self.assertEqual(len(await self.in_thread(unpaged)), 3)

        def paged() -> list[str]:
            from ldap.controls import SimplePagedResultsControl

            connection = self.python_ldap_bind(ADMIN, SECRET)
            control = SimplePagedResultsControl(True, size=100, cookie="")
            seen: list[str] = []
            while True:
                message_id = connection.search_ext(
                    USERS,
                    ldap.SCOPE_ONELEVEL,
                    "(objectClass=user)",
                    ["1.1"],
                    serverctrls=[control],
                )
                _, data, _, controls = connection.result3(message_id)
                seen.extend(dn for dn, _ in data)
                [response] = [
                    c
                    for c in controls
                    if c.controlType == SimplePagedResultsControl.controlType
                ]
                if not response.cookie:
                    return seen
                control.cookie = response.cookie

        self.assertEqual(len(await self.in_thread(paged)), 7)

    async def test_escaped_filter(self) -> None:
        """
        A value escaped with C{escape_filter_chars} matches literally.
        """

        def search() -> list[Any]:
            connection = self.python_ldap_bind(ADMIN, SECRET, starttls=True)
            value = escape_filter_chars("BOB (BUILDER) *")
            return list(
                connection.search_s(
                    USERS, ldap.SCOPE_SUBTREE, f"(displayName={value})", ["uid"]
                )
            )

        results = await self.in_thread(search)
        self.assertEqual([dn for dn, _ in results], [self.dn(self.bob)])

    async def test_root_dse(self) -> None:
        """
        python-ldap reads the root DSE anonymously.
        """

        def read() -> dict[str, Any]:
            return dict(self.python_ldap().read_rootdse_s())

        dse = await self.in_thread(read)
        self.assertEqual(dse["namingContexts"], [SUFFIX.encode()])
        self.assertIn(b"1.3.6.1.4.1.4203.1.11.3", dse["supportedExtension"])


class LDAP3Tests(LiveServerTestBase):
    """
    Tests with ldap3.
    """

    def ldap3_connection(
        self, user: str = ADMIN, password: str = SECRET, secure: bool = True
    ) -> Any:
        tls = ldap3.Tls(validate=ssl.CERT_NONE)
        server = ldap3.Server(
            "127.0.0.1",
            port=self.secure_port if secure else self.plain_port,
            use_ssl=secure,
            tls=tls,
            get_info=ldap3.ALL,
        )
        return ldap3.Connection(server, user=user, password=password, auto_bind=True)

    async def test_search(self) -> None:
        """
        ldap3 finds users case-insensitively and reads the schema-free root
        DSE information.
        """

        def search() -> tuple[list[str], list[str], Any]:
            connection = self.ldap3_connection()
            connection.search(
                USERS,
                "(&(objectclass=USER)(|(USERNAME=ALICE)(mail=ALICE)))",
                attributes=["*", "+"],
            )
            dns = [entry.entry_dn for entry in connection.entries]
            memberships = (
                [str(v) for v in connection.entries[0]["memberOf"]] if dns else []
            )
            naming = connection.server.info.naming_contexts
            connection.unbind()
            return dns, memberships, naming

        dns, memberships, naming = await self.in_thread(search)
        self.assertEqual(dns, [self.dn(self.alice)])
        self.assertEqual(memberships, [f"cn=admins,{GROUPS}"])
        self.assertEqual(naming, [SUFFIX])

    async def test_group_membership(self) -> None:
        """
        Group members are found by memberOf, and groups by member.
        """

        def search() -> tuple[list[str], list[str]]:
            connection = self.ldap3_connection()
            connection.search(
                USERS, f"(memberOf=CN=ADMINS,{GROUPS.upper()})", attributes=["username"]
            )
            users = sorted(str(e["username"]) for e in connection.entries)
            connection.search(
                GROUPS, f"(member={self.dn(self.bob)})", attributes=["cn"]
            )
            groups = [str(e["cn"]) for e in connection.entries]
            return users, groups

        users, groups = await self.in_thread(search)
        self.assertEqual(users, ["alice", "bob"])
        self.assertEqual(groups, ["admins"])

    async def test_user_bind_and_writes(self) -> None:
        """
        A user binds over StartTLS with ldap3; writes get
        unwillingToPerform.
        """

        def work() -> tuple[str, int]:
            tls = ldap3.Tls(validate=ssl.CERT_NONE)
            server = ldap3.Server("127.0.0.1", port=self.plain_port, tls=tls)
            connection = ldap3.Connection(
                server, user=f"uid=alice,{USERS}", password=PASSWORD
            )
            connection.open()
            connection.start_tls()
            connection.bind()
            who = connection.extend.standard.who_am_i()
            connection.modify(
                self.dn(self.alice),
                {"mail": [(ldap3.MODIFY_REPLACE, ["x@example.com"])]},
            )
            return str(who), connection.result["result"]

        who, code = await self.in_thread(work)
        self.assertEqual(who, f"dn:{self.dn(self.alice)}")
        self.assertEqual(code, 53)


class AccessTests(LiveServerTestBase):
    """
    Tests for the allowlist and the on/off switch against real clients.
    """

    async def test_allowlist_refuses(self) -> None:
        """
        A client outside the allowlist is disconnected at once; changing the
        allowlist takes effect without a restart.
        """
        await self.directory.set_setting(ALLOWLIST_KEY, ["10.0.0.0/8"])

        def search() -> Any:
            connection = self.python_ldap_bind(ADMIN, SECRET)
            return connection.search_s("", ldap.SCOPE_BASE)

        await self.assertFailure(deferToThread(search), ldap.SERVER_DOWN)
        code, _, _ = await self.ldapsearch(
            "-x", "-H", self.ldap_url, "-b", "", "-s", "base"
        )
        self.assertNotEqual(code, 0)

        await self.directory.set_setting(ALLOWLIST_KEY, ["127.0.0.0/8"])
        self.assertEqual(len(await self.in_thread(search)), 1)

    async def test_disabled(self) -> None:
        """
        While the server is disabled, connections are closed at once.
        """
        await self.directory.set_setting(ENABLED_KEY, False)
        code, _, _ = await self.ldapsearch(
            "-x", "-H", self.ldaps_url, "-b", "", "-s", "base"
        )
        self.assertNotEqual(code, 0)

    async def test_bad_clients_do_not_block(self) -> None:
        """
        While one client sends garbage, two request a lot without reading
        (one over LDAPS), and many sit idle, a normal client is served.
        """
        for i in range(200):
            await self.directory.add_user(f"bulk{i:03d}", f"bulk{i:03d}@example.com")

        def bad_clients() -> list[socket.socket]:
            sockets = []
            garbage = socket.create_connection(("127.0.0.1", self.plain_port))
            garbage.sendall(b"\x30\x84\xff\xff\xff\xff" + os.urandom(64))
            sockets.append(garbage)
            for _ in range(50):
                sockets.append(socket.create_connection(("127.0.0.1", self.plain_port)))
            return sockets

        sockets = await self.in_thread(bad_clients)
        self.addCleanup(lambda: [s.close() for s in sockets])

        def slow_reader() -> socket.socket:
            from .ldaphelpers import bind_request, search_request

            slow = socket.create_connection(("127.0.0.1", self.plain_port))
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.sendall(bind_request(1, ADMIN, SECRET.encode()))
            for message_id in range(2, 40):
                slow.sendall(
                    search_request(
                        message_id, USERS, "(objectClass=*)", attributes=("*", "+")
                    )
                )
            return slow

        slow = await self.in_thread(slow_reader)
        self.addCleanup(slow.close)

        def slow_tls_reader() -> socket.socket:
            from .ldaphelpers import bind_request, search_request

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            raw = socket.create_connection(("127.0.0.1", self.secure_port))
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            secure = context.wrap_socket(raw)
            secure.sendall(bind_request(1, ADMIN, SECRET.encode()))
            for message_id in range(2, 40):
                secure.sendall(
                    search_request(
                        message_id, USERS, "(objectClass=*)", attributes=("*", "+")
                    )
                )
            return secure

        slow_tls = await self.in_thread(slow_tls_reader)
        self.addCleanup(slow_tls.close)

        start = time.monotonic()
        code, out, err = await self.ldapsearch(
            *self.admin_arguments(), "-b", USERS, "(username=alice)", "1.1"
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(entries_of(out), [self.dn(self.alice)])
        self.assertLess(time.monotonic() - start, 30)

        # The slow readers' searches wait, paused, for them to read.
        for factory in (self.plain_factory, self.secure_factory):
            self.assertTrue(any(c._write_paused for c in factory.connections))
