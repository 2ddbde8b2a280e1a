"""
Tests for L{idserver.devinstance}.
"""

from __future__ import annotations

import io
import json
import re
import stat
import subprocess
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from idserver.config import load_config
from idserver.devinstance import CONFIG_NAME, OWNER, _admin_command, set_up


class SetUpTests(SynchronousTestCase):
    """
    Tests for L{set_up}, which runs the real C{idserver-admin}.
    """

    def test_first_and_second_run(self) -> None:
        """
        The first run creates the files and the admin C{owner} and prints
        the password once; the second run prints no password.
        """
        directory = Path(self.mktemp()).absolute()

        first = io.StringIO()
        set_up(directory, first)

        config = load_config(directory / CONFIG_NAME)
        self.assertEqual(config.server.public_url, "https://127.0.0.1:8443")
        self.assertEqual(config.http.listen, ("ssl:8443:interface=127.0.0.1",))
        self.assertEqual(
            config.ldap.listen,
            ("ssl:6360:interface=127.0.0.1", "tcp:3890:interface=127.0.0.1"),
        )
        assert config.tls is not None
        self.assertEqual(stat.S_IMODE(config.tls.private_key.stat().st_mode), 0o600)
        match = re.search(r"Password: (\S+)", first.getvalue())
        assert match is not None, first.getvalue()
        password = match.group(1)

        output = subprocess.run(
            [
                *_admin_command(),
                "--config",
                str(directory / CONFIG_NAME),
                "user",
                "show",
                OWNER,
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        user = json.loads(output.stdout)
        self.assertEqual(user["email"], "owner@example.com")
        self.assertEqual(user["role"], "admin")

        second = io.StringIO()
        set_up(directory, second)

        self.assertNotIn(password, second.getvalue())
        self.assertNotIn("Password:", second.getvalue())
        self.assertIn("is ready", second.getvalue())
