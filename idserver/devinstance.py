"""
Set up a development instance in a directory: C{python -m idserver.devinstance
./var}.

The first run writes C{idserver.toml} (HTTPS on 127.0.0.1:8443, LDAPS on
6360, LDAP with StartTLS on 3890), a self-signed certificate for
C{localhost} and C{127.0.0.1}, initialises the database with
C{idserver-admin init}, enables the LDAP server for loopback clients with
a generated secret for its admin bind DN, and creates the admin C{owner}
with a generated password; it prints both secrets once. Later runs reuse
the directory, apply pending migrations and print no secret.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from idserver.tls import create_self_signed_certificate

__all__ = ["CONFIG_NAME", "OWNER", "main", "set_up"]

CONFIG_NAME = "idserver.toml"
OWNER = "owner"
OWNER_EMAIL = "owner@example.com"
PUBLIC_URL = "https://127.0.0.1:8443"

_CONFIG = f"""\
# Development instance written by python -m idserver.devinstance.
# Every key is explained in etc/idserver.toml of the source tree.

[server]
name = "idserver (development)"
public_url = "{PUBLIC_URL}"
data_dir = "data"

[tls]
certificate = "tls/certificate.pem"
private_key = "tls/private-key.pem"

[http]
listen = ["ssl:8443:interface=127.0.0.1"]

[ldap]
listen = ["ssl:6360:interface=127.0.0.1", "tcp:3890:interface=127.0.0.1"]
suffix = "dc=cloudron"

[sessions]
store = "sqlite"
"""


class SetupError(Exception):
    """
    A step of the set-up failed; the message names the step.
    """


def _admin_command() -> list[str]:
    # The idserver-admin script of the same installation as this Python.
    script = Path(sys.executable).parent / "idserver-admin"
    if script.exists():
        return [str(script)]
    found = shutil.which("idserver-admin")
    if found is None:
        raise SetupError(
            "idserver-admin not found: install idserver (pip install -e .) first"
        )
    return [found]


def _run_admin(
    config: Path, arguments: Sequence[str], *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_admin_command(), "--config", str(config), *arguments],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        check=False,
    )


def _write_files(directory: Path, out: IO[str]) -> None:
    tls = directory / "tls"
    tls.mkdir(mode=0o700, exist_ok=True)
    certificate = tls / "certificate.pem"
    key = tls / "private-key.pem"
    if not (certificate.exists() and key.exists()):
        create_self_signed_certificate(certificate, key)
        out.write(f"Created a self-signed certificate {certificate}\n")
    (directory / CONFIG_NAME).write_text(_CONFIG)
    out.write(f"Created {directory / CONFIG_NAME}\n")


def set_up(directory: Path, out: IO[str]) -> None:
    """
    Create or update the development instance in C{directory}.

    @param out: where the progress and, once, the owner's password go.
    @raise SetupError: a step failed.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = directory / CONFIG_NAME
    if not config.exists():
        _write_files(directory, out)

    init = _run_admin(config, ["init"])
    if init.returncode != 0:
        raise SetupError(f"idserver-admin init failed:\n{init.stderr.strip()}")
    out.write(init.stdout)
    _enable_ldap(config, out)

    if _run_admin(config, ["user", "show", OWNER]).returncode == 0:
        out.write(
            f"\nThe development instance in {directory} is ready.\n"
            f"Sign in at {PUBLIC_URL}/ as {OWNER!r} with the password printed "
            "when it was created.\n"
            f"To set a new one: idserver-admin --config {config} "
            f"user set-password {OWNER}\n"
        )
        return

    password = secrets.token_urlsafe(15)
    added = _run_admin(
        config,
        [
            "user",
            "add",
            OWNER,
            "--email",
            OWNER_EMAIL,
            "--name",
            "Owner",
            "--admin",
            "--password-stdin",
        ],
        stdin=password + "\n",
    )
    if added.returncode != 0:
        raise SetupError(
            f"idserver-admin user add {OWNER} failed:\n{added.stderr.strip()}"
        )
    out.write(
        f"\nCreated the admin {OWNER!r} ({OWNER_EMAIL}).\n"
        f"  Password: {password}\n"
        "It is shown only this once.\n\n"
        "Start the server (make run does this) with:\n"
        f"  twistd -n idserver --config {config}\n"
        f"Then open {PUBLIC_URL}/ (the certificate is self-signed) and sign in "
        f"as {OWNER!r}.\n"
    )


def _enable_ldap(config: Path, out: IO[str]) -> None:
    """
    Turn the LDAP server on for loopback clients with a generated secret,
    printed once, unless it was ever configured.
    """
    shown = _run_admin(config, ["ldap-server", "show", "--json"])
    if shown.returncode != 0:
        raise SetupError(
            f"idserver-admin ldap-server show failed:\n{shown.stderr.strip()}"
        )
    current = json.loads(shown.stdout)
    if current["enabled"] or current["allowlist"]:
        return
    enabled = _run_admin(
        config,
        [
            "ldap-server",
            "enable",
            "--allow",
            "127.0.0.1",
            "--allow",
            "::1",
            "--generate-secret",
            "--json",
        ],
    )
    if enabled.returncode != 0:
        raise SetupError(
            f"idserver-admin ldap-server enable failed:\n{enabled.stderr.strip()}"
        )
    result = json.loads(enabled.stdout)
    out.write(
        "\nEnabled the LDAP server for 127.0.0.1 and ::1 (LDAPS on port 6360,"
        " LDAP with StartTLS on 3890).\n"
        f"  Bind DN: {result['bind_dn']}\n"
        f"  Secret:  {result['secret']}\n"
        "It is shown only this once; idserver-admin ldap-server enable"
        " --generate-secret makes a new one.\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the set-up for the directory named by the first argument (C{var}
    by default) and return the exit code.
    """
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        sys.stderr.write("usage: python -m idserver.devinstance [DIRECTORY]\n")
        return 2
    directory = Path(argv[0] if argv else "var")
    # Files written here (certificate, configuration) are for this user only.
    os.umask(0o077)
    try:
        set_up(directory, sys.stdout)
    except (SetupError, OSError) as e:
        sys.stderr.write(f"idserver.devinstance: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
