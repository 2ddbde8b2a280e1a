"""
Tests for L{idserver.config}.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from idserver.config import (
    CONFIG_ENVIRONMENT_VARIABLE,
    DEFAULT_CONFIG_PATH,
    ConfigError,
    PasswordsConfig,
    default_config_path,
    load_config,
)
from tests.configfiles import make_certificate, write_config


class ConfigTestCase(SynchronousTestCase):
    """
    Base class: a fresh directory for configuration files.
    """

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir(parents=True)

    def assertConfigError(self, path: Path, *fragments: str) -> str:
        """
        Assert that loading C{path} raises L{ConfigError} whose message
        contains every fragment, and return the message.
        """
        error = self.assertRaises(ConfigError, load_config, path)
        message = str(error)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message


class LoadConfigTests(ConfigTestCase):
    """
    Tests for L{load_config} on valid files.
    """

    def test_defaults(self) -> None:
        """
        A file with only C{public_url} and a certificate gets the documented
        defaults.
        """
        make_certificate(self.directory)
        path = self.directory / "minimal.toml"
        path.write_text(
            '[server]\npublic_url = "https://id.example.com"\n'
            '[tls]\ncertificate = "certificate.pem"\n'
            'private_key = "private-key.pem"\n'
        )

        config = load_config(path)

        self.assertEqual(config.server.name, "idserver")
        self.assertEqual(config.server.data_dir, Path("/var/lib/idserver"))
        self.assertEqual(config.http.listen, ("ssl:443",))
        self.assertEqual(config.http.trusted_proxies, ())
        self.assertEqual(config.ldap.listen, ("ssl:636",))
        self.assertEqual(config.ldap.suffix, "dc=cloudron")
        self.assertEqual(config.ldap.max_entries, 1000)
        self.assertEqual(config.ldap.idle_timeout, 600.0)
        self.assertEqual(config.ldap.max_message_size, 1024 * 1024)
        self.assertEqual(config.sessions.store, "sqlite")
        self.assertIsNone(config.sessions.redis_url)
        self.assertEqual(config.passwords, PasswordsConfig())

    def test_every_key(self) -> None:
        """
        Every key of every section is read into the typed configuration.
        """
        path = write_config(
            self.directory,
            server=(
                'name = "Example"\npublic_url = "https://id.example.com:8443"\n'
                'data_dir = "/srv/idserver"'
            ),
            http=(
                'listen = ["ssl:8443:interface=127.0.0.1", "tcp:8080"]\n'
                'trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1"]'
            ),
            ldap=(
                'listen = ["ssl:6360", "tcp:3890:interface=127.0.0.1"]\n'
                'suffix = "dc=example,dc=com"\nmax_entries = 50\n'
                "idle_timeout = 30.5\nmax_message_size = 65536"
            ),
            body=(
                '[sessions]\nstore = "sqlite"\nredis_url = "redis://127.0.0.1:6379/0"\n'
                "[passwords]\ntime_cost = 2\nmemory_cost = 1024\nparallelism = 2\n"
                "max_threads = 3\nmax_queue = 10\n"
            ),
        )

        config = load_config(path)

        self.assertEqual(config.path, path)
        self.assertEqual(config.base_dir, self.directory)
        self.assertEqual(config.server.name, "Example")
        self.assertEqual(config.server.public_url, "https://id.example.com:8443")
        self.assertEqual(config.server.issuer, "https://id.example.com:8443/openid")
        self.assertEqual(config.server.data_dir, Path("/srv/idserver"))
        assert config.tls is not None
        self.assertEqual(config.tls.certificate, self.directory / "certificate.pem")
        self.assertEqual(config.tls.private_key, self.directory / "private-key.pem")
        self.assertEqual(
            config.http.listen, ("ssl:8443:interface=127.0.0.1", "tcp:8080")
        )
        self.assertEqual(
            config.http.trusted_proxies,
            (
                ipaddress.ip_network("127.0.0.1/32"),
                ipaddress.ip_network("10.0.0.0/8"),
                ipaddress.ip_network("::1/128"),
            ),
        )
        self.assertEqual(
            config.ldap.listen, ("ssl:6360", "tcp:3890:interface=127.0.0.1")
        )
        self.assertEqual(config.ldap.suffix, "dc=example,dc=com")
        self.assertEqual(config.ldap.max_entries, 50)
        self.assertEqual(config.ldap.idle_timeout, 30.5)
        self.assertEqual(config.ldap.max_message_size, 65536)
        self.assertEqual(config.sessions.redis_url, "redis://127.0.0.1:6379/0")
        self.assertEqual(
            config.passwords,
            PasswordsConfig(
                time_cost=2,
                memory_cost=1024,
                parallelism=2,
                max_threads=3,
                max_queue=10,
            ),
        )

    def test_relative_paths(self) -> None:
        """
        Relative paths are taken from the directory of the file, not from
        the working directory.
        """
        path = write_config(self.directory / "etc")
        elsewhere = Path(self.mktemp()).absolute()
        elsewhere.mkdir()
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(elsewhere)

        config = load_config(path)

        self.assertEqual(config.server.data_dir, self.directory / "etc" / "data")
        assert config.tls is not None
        self.assertEqual(
            config.tls.certificate, self.directory / "etc" / "certificate.pem"
        )

    def test_relative_path_in_listener(self) -> None:
        """
        The certificate files named in an C{ssl:} listener string are also
        taken from the directory of the file.
        """
        path = write_config(
            self.directory,
            tls=False,
            http=(
                'listen = ["ssl:0:certKey=certificate.pem:privateKey=private-key.pem"]'
            ),
        )
        make_certificate(self.directory)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir("/")

        config = load_config(path)

        self.assertIsNone(config.tls)

    def test_relative_config_path(self) -> None:
        """
        A relative path to the file itself is made absolute.
        """
        write_config(self.directory)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.directory)

        config = load_config("idserver.toml")

        self.assertEqual(config.path, self.directory / "idserver.toml")
        self.assertEqual(config.server.data_dir, self.directory / "data")

    def test_tls_optional_without_ldap(self) -> None:
        """
        Without TLS listeners and without LDAP listeners, C{[tls]} may be
        left out (behind a reverse proxy that terminates TLS).
        """
        path = write_config(self.directory, tls=False)

        config = load_config(path)

        self.assertIsNone(config.tls)

    def test_public_url_spellings(self) -> None:
        """
        An IPv6 literal, a port, a path and an xn-- host name are accepted
        as written.
        """
        for url in [
            "https://[2001:db8::1]:8443",
            "https://id.example.com/idserver",
            "https://xn--bcher-kva.example",
        ]:
            path = write_config(self.directory, server=f'public_url = "{url}"')
            self.assertEqual(load_config(path).server.public_url, url)

    def test_loopback_http_public_url(self) -> None:
        """
        C{http://} is accepted for a loopback host, for development.
        """
        path = write_config(
            self.directory, server='public_url = "http://127.0.0.1:8080"'
        )

        config = load_config(path)

        self.assertEqual(config.server.issuer, "http://127.0.0.1:8080/openid")

    def test_systemd_listener(self) -> None:
        """
        A C{systemd:} listener is checked for form only, since the sockets
        exist only inside the systemd service.
        """
        path = write_config(
            self.directory, http='listen = ["systemd:domain=INET:index=0"]'
        )

        config = load_config(path)

        self.assertEqual(config.http.listen, ("systemd:domain=INET:index=0",))

    def test_redis_store_parsed(self) -> None:
        """
        C{store = "redis"} with a URL passes the parser; whether the store
        is available is decided when the service is built.
        """
        path = write_config(
            self.directory,
            body='[sessions]\nstore = "redis"\nredis_url = "redis://127.0.0.1:6379"\n',
        )

        config = load_config(path)

        self.assertEqual(config.sessions.store, "redis")
        self.assertEqual(config.sessions.redis_url, "redis://127.0.0.1:6379")


class ConfigErrorTests(ConfigTestCase):
    """
    Tests for the errors of L{load_config}: each names the key, the value
    and what is expected.
    """

    def test_usage_error(self) -> None:
        """
        L{ConfigError} is a L{usage.UsageError}, so twistd prints it and
        exits.
        """
        self.assertTrue(issubclass(ConfigError, usage.UsageError))

    def test_missing_file(self) -> None:
        """
        A missing file is reported with its path and how to choose another.
        """
        path = self.directory / "absent.toml"
        self.assertConfigError(path, str(path), "not found", "--config")

    def test_unreadable_file(self) -> None:
        """
        A path that cannot be read (a directory here) is reported.
        """
        self.assertConfigError(self.directory, "cannot read", str(self.directory))

    def test_invalid_toml(self) -> None:
        """
        A syntax error is reported with the file and TOML's position.
        """
        path = self.directory / "broken.toml"
        path.write_text("[server\npublic_url = 1\n")
        self.assertConfigError(path, str(path), "not valid TOML", "line 1")

    def test_not_utf8(self) -> None:
        """
        A file that is not UTF-8 is reported as invalid TOML, not a crash.
        """
        path = self.directory / "latin1.toml"
        path.write_bytes(b'[server]\nname = "Caf\xe9"\n')
        self.assertConfigError(path, str(path), "not valid TOML", "UTF-8")

    def test_misspelled_key(self) -> None:
        """
        A misspelled key in a section is named with its section.
        """
        path = write_config(
            self.directory,
            server='public_url = "https://id.example.com"\nnmae = "x"',
        )
        self.assertConfigError(
            path, "unknown key server.nmae", "name, public_url, data_dir"
        )

    def test_misspelled_nested_keys(self) -> None:
        """
        Unknown keys are found in every section.
        """
        cases = {
            "[passwords]\ntimecost = 1\n": "unknown key passwords.timecost",
            "[sessions]\nstores = 'sqlite'\n": "unknown key sessions.stores",
        }
        for body, fragment in cases.items():
            path = write_config(self.directory, body=body)
            self.assertConfigError(path, fragment)

        path = write_config(self.directory, ldap="listen = []\nmax_entry = 5")
        self.assertConfigError(path, "unknown key ldap.max_entry")
        path = write_config(self.directory, http='listen = []\ntrusted_proxy = ["::1"]')
        self.assertConfigError(path, "unknown key http.trusted_proxy")

    def test_misspelled_tls_key(self) -> None:
        """
        An unknown key in C{[tls]} is named.
        """
        make_certificate(self.directory)
        path = self.directory / "t.toml"
        path.write_text(
            '[server]\npublic_url = "https://id.example.com"\n'
            '[tls]\ncertificate = "certificate.pem"\n'
            'private_key = "private-key.pem"\nkey = "x"\n'
        )
        self.assertConfigError(path, "unknown key tls.key")

    def test_unknown_section(self) -> None:
        """
        An unknown section is named, with the list of known ones.
        """
        path = write_config(self.directory, body="[openid]\nx = 1\n")
        self.assertConfigError(
            path, "unknown key openid", "[server]", "[passwords]", "[oidc]"
        )

    def test_section_not_a_table(self) -> None:
        """
        A section given as a plain value is reported.
        """
        path = self.directory / "t.toml"
        path.write_text('server = "id.example.com"\n')
        self.assertConfigError(path, "server must be a table")

    def test_missing_public_url(self) -> None:
        """
        C{public_url} has no default.
        """
        path = write_config(self.directory, server='name = "x"')
        self.assertConfigError(path, "missing server.public_url")

    def test_wrong_types(self) -> None:
        """
        A value of the wrong TOML type names the key, the value and the
        expected type.
        """
        cases = [
            (
                {"server": "public_url = 42"},
                "invalid server.public_url = 42: expected a non-empty string",
            ),
            (
                {"http": 'listen = "tcp:80"'},
                "invalid http.listen = 'tcp:80': expected a list of strings",
            ),
            (
                {"http": "listen = [80]"},
                "invalid http.listen = [80]: expected a list of strings",
            ),
            (
                {"ldap": "listen = []\nmax_entries = true"},
                "invalid ldap.max_entries = true: expected an integer",
            ),
            (
                {"ldap": 'listen = []\nmax_entries = "many"'},
                "invalid ldap.max_entries = 'many': expected an integer of at least 1",
            ),
            (
                {"ldap": "listen = []\nmax_entries = 0"},
                "invalid ldap.max_entries = 0: expected an integer of at least 1",
            ),
            (
                {"ldap": 'listen = []\nidle_timeout = "10m"'},
                "invalid ldap.idle_timeout = '10m': expected a finite number",
            ),
            (
                {"ldap": "listen = []\nidle_timeout = 0"},
                "invalid ldap.idle_timeout = 0: expected a finite number of seconds "
                "greater than 0",
            ),
            (
                {"ldap": "listen = []\nidle_timeout = inf"},
                "invalid ldap.idle_timeout = inf: expected a finite number",
            ),
            (
                {"ldap": "listen = []\nidle_timeout = nan"},
                "invalid ldap.idle_timeout = nan: expected a finite number",
            ),
            (
                {"server": 'public_url = "https://a.example"\ndata_dir = ""'},
                "invalid server.data_dir = '': expected a non-empty string",
            ),
            (
                {"server": 'public_url = "https://a.example"\ndata_dir = "a\\u0000b"'},
                "invalid server.data_dir = 'a\\x00b': expected a file path without NUL",
            ),
        ]
        for sections, message in cases:
            path = write_config(self.directory, **sections)
            self.assertConfigError(path, message)

    def test_wrong_password_parameters(self) -> None:
        """
        argon2 parameters out of range are reported.
        """
        cases = {
            "time_cost = 0": "invalid passwords.time_cost = 0",
            "max_threads = 0": "invalid passwords.max_threads = 0",
            "max_queue = -1": "invalid passwords.max_queue = -1",
            "memory_cost = 16\nparallelism = 4": (
                "invalid passwords.memory_cost = 16: expected at least 8 KiB "
                "per lane of parallelism (32)"
            ),
        }
        for body, message in cases.items():
            path = write_config(self.directory, body=f"[passwords]\n{body}\n")
            self.assertConfigError(path, message)

    def test_invalid_public_url(self) -> None:
        """
        C{public_url} must be an absolute https URL without a trailing
        slash, query or fragment, in one plain spelling; plain http only on
        loopback.
        """
        for url in [
            "https://id.example.com/",
            "http://id.example.com",
            "id.example.com",
            "https://id.example.com?x=1",
            "https://id.example.com#top",
            "ftp://id.example.com",
            "https://id.example.com:99999",
            "https://",
            "https://user:secret@id.example.com",
            "https://id example.com",
            "https://id.example.com/open id",
            "https://id.example.com:",
            "HTTPS://id.example.com",
            "https://bücher.example",
        ]:
            path = write_config(self.directory, server=f'public_url = "{url}"')
            self.assertConfigError(
                path, f"invalid server.public_url = {url!r}", "expected a"
            )

        # A newline, which urlsplit would drop from the host name.
        path = write_config(
            self.directory, server='public_url = "https://id.example.com\\n"'
        )
        self.assertConfigError(
            path, "invalid server.public_url = 'https://id.example.com\\n'"
        )

    def test_invalid_trusted_proxy(self) -> None:
        """
        A trusted proxy that is not an address or network is named.
        """
        path = write_config(
            self.directory,
            http='listen = []\ntrusted_proxies = ["10.0.0.0/8", "proxy.local"]',
        )
        self.assertConfigError(
            path, "invalid http.trusted_proxies = 'proxy.local'", "IP addresses"
        )

    def test_invalid_suffix(self) -> None:
        """
        An LDAP suffix that is not a DN is reported.
        """
        path = write_config(self.directory, ldap='listen = []\nsuffix = "cloudron"')
        self.assertConfigError(
            path, "invalid ldap.suffix = 'cloudron'", "distinguished name"
        )

    def test_malformed_suffix(self) -> None:
        """
        Suffixes with an empty RDN, an empty type or value, or a trailing
        backslash are reported, not accepted or crashed on.
        """
        for suffix in ["dc=example,", ",", "=", "dc=", "=x", "dc=a\\\\", "\\\\"]:
            path = write_config(
                self.directory, ldap=f'listen = []\nsuffix = "{suffix}"'
            )
            self.assertConfigError(path, "invalid ldap.suffix", "distinguished name")

    def test_valid_suffixes(self) -> None:
        """
        Multi-valued RDNs, escapes and numeric attribute types are accepted.
        """
        for suffix in ["dc=example,dc=com", "o=a+ou=b", "cn=a\\\\,b", "2.5.4.3=x"]:
            path = write_config(
                self.directory, ldap=f'listen = []\nsuffix = "{suffix}"'
            )
            load_config(path)

    def test_invalid_session_store(self) -> None:
        """
        Only C{sqlite} and C{redis} are session stores.
        """
        path = write_config(self.directory, body='[sessions]\nstore = "memcached"\n')
        self.assertConfigError(
            path, "invalid sessions.store = 'memcached'", '"sqlite" or "redis"'
        )

    def test_redis_without_url(self) -> None:
        """
        The Redis store needs C{redis_url}.
        """
        path = write_config(self.directory, body='[sessions]\nstore = "redis"\n')
        self.assertConfigError(path, "missing sessions.redis_url")

    def test_invalid_redis_url(self) -> None:
        """
        C{redis_url} must be a Redis URL.
        """
        path = write_config(
            self.directory, body='[sessions]\nredis_url = "http://127.0.0.1"\n'
        )
        self.assertConfigError(
            path, "invalid sessions.redis_url = 'http://127.0.0.1'", "redis://"
        )

    def test_malformed_redis_url(self) -> None:
        """
        A C{redis_url} that cannot be parsed as a URL is reported.
        """
        path = write_config(
            self.directory, body='[sessions]\nredis_url = "redis://["\n'
        )
        self.assertConfigError(
            path, "invalid sessions.redis_url = 'redis://['", "redis://"
        )

    def test_bad_endpoints(self) -> None:
        """
        A listener string that cannot be built is named with the reason.
        """
        cases = {
            "tcpp:80": "Unknown endpoint type",
            "tcp:http": "the port 'http' is not a number",
            "tcp:70000": "the port 70000 is not between 0 and 65535",
            "tcp:80:interfce=127.0.0.1": "invalid arguments for a tcp: endpoint",
            "tcp": "invalid arguments for a tcp: endpoint",
            "unix:": "a unix: endpoint needs a socket path",
            ":80": "endpoint type",
            "ssl": "an ssl: endpoint takes exactly one port",
            "ssl:443:sslmethod=TLSv1_METHOD": "sslmethod is not supported",
            "ssl:443:certfile=x.pem": "unknown option 'certfile'",
            "ssl:443:backlog=many": "the backlog 'many' is not a number",
            "ssl:443:certKey=certificate.pem": "certKey= needs privateKey=",
            "ssl:443:privateKey=absent.pem": "cannot read the certificate",
            "systemd:domain=INET": "exactly one of index= or name=",
            "systemd:domain=NOPE:index=0": "domain=INET",
            "systemd:domain=INET:index=first": "the index 'first' is not a number",
        }
        for description, reason in cases.items():
            path = write_config(self.directory, http=f'listen = ["{description}"]')
            self.assertConfigError(
                path, f"invalid http.listen entry {description!r}: ", reason
            )

    def test_unresolvable_paths(self) -> None:
        """
        A symlink loop or the home of an unknown user in a path is reported
        with the key, in the configuration and in listener strings.
        """
        os.symlink(self.directory / "loop", self.directory / "loop")
        for value in ["loop", "~no-such-user-here/data"]:
            path = write_config(
                self.directory,
                server=f'public_url = "https://id.example.com"\ndata_dir = "{value}"',
            )
            self.assertConfigError(
                path, f"invalid server.data_dir = {value!r}", "can be resolved"
            )

            path = write_config(
                self.directory, http=f'listen = ["ssl:443:privateKey={value}"]'
            )
            self.assertConfigError(
                path, "invalid http.listen entry", "cannot resolve the file name"
            )

    def test_nul_in_listener_file(self) -> None:
        """
        A file name with a NUL character in an C{ssl:} listener is reported.
        """
        path = write_config(
            self.directory, http='listen = ["ssl:443:privateKey=a\\u0000b.pem"]'
        )
        self.assertConfigError(
            path, "invalid http.listen entry", "'a\\x00b.pem' contains a NUL"
        )

    def test_bad_ldap_endpoint(self) -> None:
        """
        LDAP listener strings are checked too.
        """
        path = write_config(self.directory, ldap='listen = ["tcp:ldap"]')
        self.assertConfigError(path, "invalid ldap.listen entry 'tcp:ldap'")

    def test_ssl_without_certificate(self) -> None:
        """
        An C{ssl:} listener needs C{[tls]} or its own certificate.
        """
        path = write_config(self.directory, tls=False, http='listen = ["ssl:0"]')
        self.assertConfigError(path, "no certificate", "[tls]")

    def test_ldap_without_tls(self) -> None:
        """
        LDAP listeners need C{[tls]}, for LDAPS and StartTLS.
        """
        path = write_config(self.directory, tls=False, ldap='listen = ["tcp:0"]')
        self.assertConfigError(path, "missing [tls] certificate and private_key")

    def test_missing_certificate_file(self) -> None:
        """
        A C{[tls]} file that does not exist is named.
        """
        path = write_config(self.directory)
        (self.directory / "certificate.pem").unlink()
        self.assertConfigError(
            path,
            "invalid [tls] section",
            f"cannot read the certificate '{self.directory / 'certificate.pem'}'",
        )

    def test_mismatched_key(self) -> None:
        """
        A private key that does not belong to the certificate is reported.
        """
        path = write_config(self.directory)
        other = self.directory / "other"
        other.mkdir()
        make_certificate(other)
        (self.directory / "private-key.pem").write_bytes(
            (other / "private-key.pem").read_bytes()
        )
        self.assertConfigError(path, "does not belong to the certificate")

    def test_not_a_certificate(self) -> None:
        """
        A certificate file without a PEM certificate is reported.
        """
        path = write_config(self.directory)
        (self.directory / "certificate.pem").write_text("not a certificate\n")
        self.assertConfigError(path, "is not a PEM certificate")


class DefaultConfigPathTests(SynchronousTestCase):
    """
    Tests for L{default_config_path}.
    """

    def setUp(self) -> None:
        saved = os.environ.pop(CONFIG_ENVIRONMENT_VARIABLE, None)
        if saved is not None:
            self.addCleanup(os.environ.__setitem__, CONFIG_ENVIRONMENT_VARIABLE, saved)

    def test_default(self) -> None:
        """
        Without C{IDSERVER_CONFIG} the path is C{/etc/idserver/idserver.toml}.
        """
        self.assertEqual(default_config_path(), DEFAULT_CONFIG_PATH)
        self.assertEqual(DEFAULT_CONFIG_PATH, "/etc/idserver/idserver.toml")

    def test_environment(self) -> None:
        """
        C{IDSERVER_CONFIG} replaces the default.
        """
        os.environ[CONFIG_ENVIRONMENT_VARIABLE] = "/srv/idserver.toml"
        self.addCleanup(os.environ.pop, CONFIG_ENVIRONMENT_VARIABLE)
        self.assertEqual(default_config_path(), "/srv/idserver.toml")
