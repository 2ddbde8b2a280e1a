"""
The development instance of C{make run}, served by C{twistd -n idserver}
in a process of its own, administered from headless Chromium alone.
"""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path
from typing import Any

from twisted.internet.threads import deferToThread

from idserver.admin.command import database_path
from idserver.config import load_config
from idserver.devinstance import CONFIG_NAME, OWNER, set_up
from idserver.directory.sqlite import open_directory
from idserver.ldap.access import AccessPolicy
from idserver.passwords import Argon2Hasher
from tests.browser.chromium import BrowserTestCase
from tests.browser.test_dashboard_browser import new_page, sign_in
from tests.test_tap import REPOSITORY, ProcessOutput, get_reactor

# The instance's fixed ports, replaced by free ones so the test does not
# collide with a running development server.
_PORTS = {
    "ssl:8443:": "ssl:0:",
    "ssl:6360:": "ssl:0:",
    "tcp:3890:": "tcp:0:",
}


def _prepare(folder: str) -> tuple[Path, str]:
    """
    Set up a development instance in C{folder} on free ports; return its
    configuration path and the owner's password.
    """
    directory = Path(folder).absolute()
    output = io.StringIO()
    set_up(directory, output)
    match = re.search(r"Password: (\S+)", output.getvalue())
    assert match is not None, output.getvalue()

    config = directory / CONFIG_NAME
    text = config.read_text()
    for fixed, free in _PORTS.items():
        text = text.replace(fixed, free)
    config.write_text(text)
    return config, match.group(1)


def _search(
    port: int, bind_dn: str, secret: str, base: str, search_filter: str
) -> list[tuple[str, str]]:
    """
    Bind to the plain LDAP listener and return the username and mail of
    each entry that C{search_filter} finds under C{base}.
    """
    import ldap3

    server = ldap3.Server("127.0.0.1", port=port, get_info=ldap3.NONE)
    with ldap3.Connection(server, bind_dn, secret, auto_bind=True) as connection:
        connection.search(base, search_filter, attributes=["username", "mail"])
        return [(str(entry.username), str(entry.mail)) for entry in connection.entries]


class DevelopmentInstanceTests(BrowserTestCase):
    """
    The printed admin runs the development instance from the browser.
    """

    async def start(self) -> tuple[Path, str, str, int]:
        """
        Set up a development instance, start C{twistd} on it, and return
        its configuration path, base URL, the owner's password and the port
        of the plain LDAP listener.
        """
        config, password = await deferToThread(_prepare, self.mktemp())
        directory = config.parent

        environment = dict(os.environ)
        environment["PYTHONPATH"] = str(REPOSITORY)
        process = ProcessOutput()
        transport = get_reactor().spawnProcess(
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
                str(config),
            ],
            env=environment,
            path=str(directory),
        )

        async def stop() -> None:
            if transport.pid is not None:
                transport.signalProcess("TERM")
                await process.ended

        self.addCleanup(stop)
        listening = await process.wait_for(
            r"HTTP listening on 127\.0\.0\.1:(\d+) \(ssl:0"
        )
        ldap = await process.wait_for(r"LDAP listening on 127\.0\.0\.1:(\d+) \(tcp:0")
        await process.wait_for("idserver started")
        base = f"https://127.0.0.1:{listening.group(1)}"
        return config, base, password, int(ldap.group(1))

    async def test_admin_from_browser(self) -> None:
        """
        The owner signs in with the printed password and creates a user, a
        group and an OpenID client, enables the LDAP server and reads its
        client settings, all in the browser.
        """
        config_path, base, password, ldap_port = await self.start()

        def steps(browser: Any, base: str) -> dict[str, Any]:
            result: dict[str, Any] = {}
            page = new_page(browser)
            sign_in(page, base, OWNER, password)
            page.wait_for_selector("h1:text('Your apps')")
            result["brand"] = page.inner_text(".brand")

            page.goto(base + "/admin/users/new")
            page.fill("#username", "erin")
            page.fill("#email", "erin@example.com")
            page.click("text=Create user")
            result["user"] = page.inner_text("h1")

            page.goto(base + "/admin/groups")
            page.fill("#name", "staff")
            page.click("text=Create group")
            page.fill("#username", "erin")
            page.click("text=Add member")
            result["members"] = page.inner_text("#members")

            page.goto(base + "/admin/clients/new")
            page.fill("#name", "Wiki")
            page.fill("#redirect_uris", "https://wiki.example.com/callback")
            page.click("text=Create client")
            result["client_id"] = page.input_value("#credentials-client-id")
            result["secret"] = page.input_value("#credentials-client-secret")

            page.goto(base + "/admin/ldap")
            page.check("#enabled")
            page.fill("#allowlist", "127.0.0.1")
            page.click("#ldap-access >> text=Save")
            result["ldap_status"] = page.inner_text("#ldap-status")
            page.click("text=Generate a new secret")
            result["ldap_secret"] = page.input_value("#ldap-secret-admin-secret")
            result["bind_dn"] = page.input_value("#ldap-client-bind-dn")
            result["users_dn"] = page.input_value("#ldap-client-users-dn")
            result["user_filter"] = page.input_value("#ldap-client-user-filter")
            result["ldap_url"] = page.input_value("#ldap-client-url-ldaps")
            page.context.close()
            return result

        result = await self.browser.run(steps, base)
        self.assertEqual(result["brand"], "idserver (development)")
        self.assertEqual(result["user"], "User erin")
        self.assertIn("erin", result["members"])
        self.assertTrue(result["client_id"].startswith("cid-"))
        self.assertTrue(result["secret"])
        self.assertEqual(result["ldap_status"], "Enabled")
        self.assertEqual(result["bind_dn"], "cn=admin,ou=system,dc=cloudron")
        self.assertTrue(result["ldap_url"].startswith("ldaps://127.0.0.1:"))

        # An LDAP client configured with the copied settings finds the user.
        entries = await deferToThread(
            _search,
            ldap_port,
            result["bind_dn"],
            result["ldap_secret"],
            result["users_dn"],
            f"(&{result['user_filter']}(username=erin))",
        )
        self.assertEqual(entries, [("erin", "erin@example.com")])

        # What the browser did is in the daemon's database.
        config = load_config(config_path)
        from twisted.internet import reactor

        # Only reads follow, so the hasher's threads are never started.
        hasher = Argon2Hasher(reactor, time_cost=1, memory_cost=8, parallelism=1)
        directory = open_directory(
            database_path(config), reactor=reactor, hasher=hasher
        )
        self.addCleanup(directory.close)
        erin = await directory.user_by_username("erin")
        group = await directory.group_by_name("staff")
        assert erin is not None and group is not None
        self.assertEqual(group.members, (erin.id,))
        settings = await directory.get_settings()
        self.assertTrue(AccessPolicy.from_settings(settings).allows("127.0.0.1"))
