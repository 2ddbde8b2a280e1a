"""
Tests for L{idserver.tap}, L{idserver.service} and the C{twistd idserver}
plugin.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import ssl
import sys
import warnings
from pathlib import Path
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.application.service import IServiceMaker
from twisted.internet import defer, error
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.ssl import Certificate
from twisted.internet.threads import deferToThread
from twisted.plugin import getPlugins
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

from idserver.config import CONFIG_ENVIRONMENT_VARIABLE, ConfigError, load_config
from idserver.oidc.service import OIDCService
from idserver.service import (
    DirectoryService,
    HasherService,
    IdServerService,
    ListenerService,
    build_ldap_services,
    build_service,
    raise_open_file_limit,
)
from idserver.tap import Options, makeService
from tests.configfiles import CHEAP_PASSWORDS, make_certificate, write_config

REPOSITORY = Path(__file__).resolve().parent.parent

LISTENERS = 'listen = ["ssl:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1"]'


def get_reactor() -> Any:
    """
    Return the global reactor, which trial runs.
    """
    from twisted.internet import reactor

    return reactor


def https_client(certificate: Path) -> HTTPClient:
    """
    Return a treq client that trusts only C{certificate} and verifies the
    host name.
    """
    policy = BrowserLikePolicyForHTTPS(
        trustRoot=Certificate.loadPEM(certificate.read_bytes())
    )
    return HTTPClient(Agent(get_reactor(), contextFactory=policy))


def tls_handshake(port: int, maximum: ssl.TLSVersion) -> str:
    """
    Complete a TLS handshake with 127.0.0.1:C{port}, offering versions up
    to C{maximum} (blocking; run it in a thread).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # The client may offer TLS 1.0 and 1.1, so that a refusal comes from
    # the server.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = maximum
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw) as connection:
            return connection.version() or ""


class OptionsTests(SynchronousTestCase):
    """
    Tests for L{Options}.
    """

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.path = write_config(self.directory, CHEAP_PASSWORDS)
        saved = os.environ.pop(CONFIG_ENVIRONMENT_VARIABLE, None)
        if saved is not None:
            self.addCleanup(os.environ.__setitem__, CONFIG_ENVIRONMENT_VARIABLE, saved)

    def test_config(self) -> None:
        """
        C{--config} names the file, which is read and checked at once.
        """
        options = Options()
        options.parseOptions(["--config", str(self.path)])

        self.assertEqual(options["config"], str(self.path))
        self.assertEqual(options["configuration"].path, self.path)

    def test_short_option(self) -> None:
        """
        C{-c} is short for C{--config}.
        """
        options = Options()
        options.parseOptions(["-c", str(self.path)])

        self.assertEqual(options["configuration"].path, self.path)

    def test_environment(self) -> None:
        """
        Without C{--config}, C{IDSERVER_CONFIG} names the file.
        """
        os.environ[CONFIG_ENVIRONMENT_VARIABLE] = str(self.path)
        self.addCleanup(os.environ.pop, CONFIG_ENVIRONMENT_VARIABLE)
        options = Options()
        options.parseOptions([])

        self.assertEqual(options["config"], str(self.path))

    def test_default(self) -> None:
        """
        Without either, the default file is read, and its absence is a
        usage error naming it.
        """
        options = Options()
        if Path("/etc/idserver/idserver.toml").exists():
            raise self.skipTest("/etc/idserver/idserver.toml exists here")

        error = self.assertRaises(ConfigError, options.parseOptions, [])

        self.assertIn("/etc/idserver/idserver.toml", str(error))

    def test_invalid_file(self) -> None:
        """
        An invalid file fails option parsing, before any service exists.
        """
        self.path.write_text("[server]\nnmae = 1\n")
        options = Options()

        error = self.assertRaises(
            ConfigError, options.parseOptions, ["--config", str(self.path)]
        )

        self.assertIn("unknown key server.nmae", str(error))


class PluginTests(SynchronousTestCase):
    """
    Tests for the C{twistd} plugin.
    """

    def test_plugin(self) -> None:
        """
        C{twistd idserver} is found and uses L{idserver.tap}.
        """
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}

        self.assertIn("idserver", makers)
        maker = makers["idserver"]
        self.assertIs(maker.options, Options)
        self.assertIs(maker.makeService, makeService)


class MakeServiceTests(SynchronousTestCase):
    """
    Tests for L{makeService} and L{build_service} without starting.
    """

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        (self.directory / "data").mkdir(parents=True)

    def options(self, body: str = "", **sections: Any) -> Options:
        path = write_config(self.directory, CHEAP_PASSWORDS + body, **sections)
        options = Options()
        options.parseOptions(["--config", str(path)])
        return options

    def test_services(self) -> None:
        """
        The service contains the hasher, the directory, the OpenID Connect
        provider, then one listener per HTTP listener string, in that order.
        """
        service = makeService(self.options(http=LISTENERS))

        assert isinstance(service, IdServerService)
        children = list(service)
        self.assertEqual(
            [type(child) for child in children],
            [
                HasherService,
                DirectoryService,
                OIDCService,
                ListenerService,
                ListenerService,
            ],
        )
        directory = children[1]
        assert isinstance(directory, DirectoryService)
        self.assertIs(service.directory_service, directory)
        self.assertEqual(
            directory.path, str(self.directory / "data" / "idserver.sqlite3")
        )
        tls, plain = children[3], children[4]
        assert isinstance(tls, ListenerService)
        assert isinstance(plain, ListenerService)
        self.assertEqual(tls.description, "ssl:0:interface=127.0.0.1")
        self.assertIsInstance(tls.endpoint, SSL4ServerEndpoint)
        self.assertEqual(plain.description, "tcp:0:interface=127.0.0.1")
        self.assertIsInstance(plain.endpoint, TCP4ServerEndpoint)
        self.assertIs(tls.factory, plain.factory)
        self.assertFalse(service.running)

    def test_ldap_listeners(self) -> None:
        """
        Each C{[ldap] listen} entry gets a listener: C{ssl:} ones serve
        LDAPS, the others offer StartTLS; all share one backend.
        """
        from idserver.ldap.server import LDAPServerFactory

        service = makeService(self.options(ldap=LISTENERS))

        ldaps, plain = [
            child
            for child in service
            if isinstance(child, ListenerService) and child.protocol == "LDAP"
        ]
        self.assertIsInstance(ldaps.endpoint, SSL4ServerEndpoint)
        self.assertIsInstance(plain.endpoint, TCP4ServerEndpoint)
        assert isinstance(ldaps.factory, LDAPServerFactory)
        assert isinstance(plain.factory, LDAPServerFactory)
        self.assertIsNone(ldaps.factory.starttls)
        self.assertIsNotNone(plain.factory.starttls)
        self.assertIs(ldaps.factory.backend, plain.factory.backend)
        self.assertEqual(
            len(
                build_ldap_services(
                    self.options(ldap=LISTENERS)["configuration"],
                    reactor=get_reactor(),
                    directory_service=DirectoryService(lambda: None, ""),  # type: ignore[arg-type,return-value]
                )
            ),
            2,
        )

    def test_missing_data_dir(self) -> None:
        """
        A data directory that does not exist stops the start, pointing at
        C{idserver-admin init}.
        """
        options = self.options(
            server='public_url = "https://id.example.com"\ndata_dir = "absent"'
        )

        error = self.assertRaises(ConfigError, makeService, options)

        self.assertIn(str(self.directory / "absent"), str(error))
        self.assertIn("idserver-admin", str(error))
        self.assertIn("init", str(error))

    def test_data_dir_not_directory(self) -> None:
        """
        A data directory path that names a file is reported as such, not as
        a directory for init to create.
        """
        (self.directory / "file").write_text("")
        options = self.options(
            server='public_url = "https://id.example.com"\ndata_dir = "file"'
        )

        error = self.assertRaises(ConfigError, makeService, options)

        self.assertIn(str(self.directory / "file"), str(error))
        self.assertIn("is not a directory", str(error))
        self.assertNotIn("init", str(error))

    def test_redis_not_available(self) -> None:
        """
        The Redis session store is refused with a clear message, never
        replaced by SQLite.
        """
        options = self.options(
            body='[sessions]\nstore = "redis"\nredis_url = "redis://127.0.0.1:6379"\n'
        )

        error = self.assertRaises(ConfigError, makeService, options)

        self.assertIn('sessions.store = "redis"', str(error))
        self.assertIn("not available in this version", str(error))


class OpenFileLimitTests(SynchronousTestCase):
    """
    Tests for L{raise_open_file_limit}.
    """

    def test_raised_to_hard_limit(self) -> None:
        """
        The soft limit of open files is raised to the hard limit.
        """
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        if hard == resource.RLIM_INFINITY or hard < 2:
            raise self.skipTest(f"the hard limit {hard} cannot be tested")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard - 1, hard))

        before, after = raise_open_file_limit()

        self.assertEqual((before, after), (hard - 1, hard))
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE), (hard, hard))


class PortInUseTests(TestCase):
    """
    Tests for a listener whose port cannot be bound.
    """

    def test_start_fails(self) -> None:
        """
        A port in use makes C{privilegedStartService} raise, so the daemon
        does not start without the listener.
        """
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        directory = Path(self.mktemp()).absolute()
        (directory / "data").mkdir(parents=True)
        path = write_config(
            directory,
            CHEAP_PASSWORDS,
            http=f'listen = ["tcp:{port}:interface=127.0.0.1"]',
        )
        service = build_service(load_config(path), reactor=get_reactor())

        self.assertRaises(error.CannotListenError, service.privilegedStartService)
        self.assertFalse(service.running)


class RunningServiceTests(TestCase):
    """
    Tests that start the service on loopback ports and talk to it.
    """

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        (self.directory / "data").mkdir(parents=True)
        path = write_config(self.directory, CHEAP_PASSWORDS, http=LISTENERS)
        self.certificate, _ = make_certificate(self.directory)
        self.config = load_config(path)
        self.service = build_service(self.config, reactor=get_reactor())
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.stop)
        listeners = [c for c in self.service if isinstance(c, ListenerService)]
        assert listeners[0].port is not None and listeners[1].port is not None
        self.tls_port = listeners[0].port.getHost().port
        self.plain_port = listeners[1].port.getHost().port
        self.client = https_client(self.certificate)

    def stop(self) -> defer.Deferred[None] | None:
        if self.service.running:
            return self.service.stopService()
        return None

    async def get(self, path: str) -> tuple[int, Any, dict[str, Any]]:
        response = await self.client.get(f"https://127.0.0.1:{self.tls_port}{path}")
        body = await treq.content(response)
        return response.code, response.headers, json.loads(body) if body else {}

    def test_healthz(self) -> defer.Deferred[None]:
        """
        C{/healthz} over TLS, with the certificate verified for 127.0.0.1,
        reports the database as ok.
        """

        async def check() -> None:
            code, headers, body = await self.get("/healthz")
            self.assertEqual(code, 200)
            self.assertEqual(body, {"status": "ok", "database": "ok"})
            self.assertEqual(
                headers.getRawHeaders(b"content-type"), [b"application/json"]
            )
            self.assertEqual(headers.getRawHeaders(b"cache-control"), [b"no-store"])

        return defer.Deferred.fromCoroutine(check())

    def test_security_headers(self) -> defer.Deferred[None]:
        """
        Responses, also a 404, carry the security headers.
        """

        async def check() -> None:
            for path in ("/healthz", "/no-such-page"):
                response = await self.client.get(
                    f"https://127.0.0.1:{self.tls_port}{path}"
                )
                await treq.content(response)
                headers = response.headers
                policy = headers.getRawHeaders(b"content-security-policy")[0]
                self.assertIn(b"frame-ancestors 'none'", policy)
                self.assertEqual(
                    headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"]
                )
                self.assertEqual(
                    headers.getRawHeaders(b"referrer-policy"), [b"no-referrer"]
                )
                self.assertTrue(headers.hasHeader(b"strict-transport-security"))

        return defer.Deferred.fromCoroutine(check())

    def test_plain_listener(self) -> defer.Deferred[None]:
        """
        A C{tcp:} listener serves the same site without TLS, and without
        HSTS.
        """

        async def check() -> None:
            client = HTTPClient(Agent(get_reactor()))
            response = await client.get(f"http://127.0.0.1:{self.plain_port}/healthz")
            body = json.loads(await treq.content(response))
            self.assertEqual(body, {"status": "ok", "database": "ok"})
            self.assertFalse(response.headers.hasHeader(b"strict-transport-security"))

        return defer.Deferred.fromCoroutine(check())

    def test_database_failing(self) -> defer.Deferred[None]:
        """
        When the database cannot be read, C{/healthz} returns 503 and reports
        the error.
        """
        directory = self.service.directory_service.directory
        assert directory is not None
        directory.close()

        async def check() -> None:
            code, _, body = await self.get("/healthz")
            self.assertEqual(code, 503)
            self.assertEqual(body, {"status": "error", "database": "error"})
            self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

        return defer.Deferred.fromCoroutine(check())

    def test_database_not_open(self) -> defer.Deferred[None]:
        """
        While the directory is closed, C{/healthz} returns 503 with
        C{unavailable}.
        """

        async def check() -> None:
            await self.service.directory_service.stopService()
            code, _, body = await self.get("/healthz")
            self.assertEqual(code, 503)
            self.assertEqual(body, {"status": "error", "database": "unavailable"})

        return defer.Deferred.fromCoroutine(check())

    def test_tls_versions(self) -> defer.Deferred[None]:
        """
        The HTTPS listener accepts TLS 1.2 and refuses TLS 1.1.
        """

        async def check() -> None:
            version = await deferToThread(
                tls_handshake, self.tls_port, ssl.TLSVersion.TLSv1_2
            )
            self.assertEqual(version, "TLSv1.2")
            attempt = deferToThread(
                tls_handshake, self.tls_port, ssl.TLSVersion.TLSv1_1
            )
            failure = await self.assertFailure(attempt, ssl.SSLError)
            self.assertEqual(failure.reason, "TLSV1_ALERT_PROTOCOL_VERSION")

        return defer.Deferred.fromCoroutine(check())

    def test_stop(self) -> defer.Deferred[None]:
        """
        Stopping closes the listeners, the directory and the hasher.
        """
        directory = self.service.directory_service.directory
        assert directory is not None
        hasher = next(c for c in self.service if isinstance(c, HasherService)).hasher

        async def check() -> None:
            await self.service.stopService()

            self.assertFalse(self.service.running)
            self.assertIsNone(self.service.directory_service.directory)
            for child in self.service:
                if isinstance(child, ListenerService):
                    self.assertIsNone(child.port)
            client = HTTPClient(Agent(get_reactor()))
            attempt = client.get(f"http://127.0.0.1:{self.plain_port}/healthz")
            await self.assertFailure(attempt, error.ConnectionRefusedError)
            await self.assertFailure(directory.ping(), RuntimeError)
            await self.assertFailure(hasher.hash("a password"), RuntimeError)

        return defer.Deferred.fromCoroutine(check())


class ProcessOutput(ProcessProtocol):
    """
    Collects the output of a process and fires Deferreds when a pattern
    appears and when the process ends.
    """

    def __init__(self) -> None:
        self.output = ""
        self.ended: defer.Deferred[Exception] = defer.Deferred()
        self._waiting: list[tuple[re.Pattern[str], defer.Deferred[re.Match[str]]]] = []

    def wait_for(self, pattern: str) -> defer.Deferred[re.Match[str]]:
        waiting: defer.Deferred[re.Match[str]] = defer.Deferred()
        self._waiting.append((re.compile(pattern), waiting))
        self._check()
        return waiting

    def _check(self) -> None:
        for entry in list(self._waiting):
            match = entry[0].search(self.output)
            if match:
                self._waiting.remove(entry)
                entry[1].callback(match)

    def outReceived(self, data: bytes) -> None:
        self.output += data.decode("utf-8", "replace")
        self._check()

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        for _, waiting in self._waiting:
            waiting.errback(
                AssertionError(f"process ended before the pattern:\n{self.output}")
            )
        self._waiting = []
        self.ended.callback(reason.value)


class TwistdTests(TestCase):
    """
    Tests that run C{twistd -n idserver} as a separate process.
    """

    def test_sigterm(self) -> defer.Deferred[None]:
        """
        C{twistd idserver} serves C{/healthz} and, on SIGTERM, stops its
        listener, closes the directory and stops the hasher before it exits.
        """
        directory = Path(self.mktemp()).absolute()
        (directory / "data").mkdir(parents=True)
        path = write_config(
            directory, CHEAP_PASSWORDS, http='listen = ["ssl:0:interface=127.0.0.1"]'
        )
        certificate, _ = make_certificate(directory)
        environment = dict(os.environ)
        environment["PYTHONPATH"] = str(REPOSITORY)
        process = ProcessOutput()
        reactor = get_reactor()
        transport = reactor.spawnProcess(
            process,
            sys.executable,
            [
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "--nodaemon",
                "--pidfile=",
                "idserver",
                "--config",
                str(path),
            ],
            env=environment,
            path=str(directory),
        )

        def kill_if_running() -> None:
            if transport.pid is not None:
                transport.signalProcess("KILL")

        self.addCleanup(kill_if_running)

        async def check() -> None:
            match = await process.wait_for(
                r"HTTP listening on 127\.0\.0\.1:(\d+) \(ssl:0"
            )
            port = int(match.group(1))
            await process.wait_for("idserver started")

            response = await https_client(certificate).get(
                f"https://127.0.0.1:{port}/healthz"
            )
            body = json.loads(await treq.content(response))
            self.assertEqual(body, {"status": "ok", "database": "ok"})

            transport.signalProcess("TERM")
            ended = await process.ended
            # After a clean shutdown twistd ends itself with the signal it
            # received, as systemd expects of a service stopped by SIGTERM.
            self.assertEqual(
                (getattr(ended, "exitCode", None), getattr(ended, "signal", None)),
                (None, signal.SIGTERM),
                process.output,
            )
            self.assertIn(f"HTTP stopped listening on 127.0.0.1:{port}", process.output)
            self.assertIn("Closed the directory", process.output)
            self.assertIn("Password hasher stopped", process.output)
            self.assertIn("idserver stopped", process.output)
            self.assertNotIn("Traceback", process.output)

        return defer.Deferred.fromCoroutine(check())
