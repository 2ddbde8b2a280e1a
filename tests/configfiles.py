"""
Configuration files for tests: a self-signed certificate and a TOML file in
a temporary directory.
"""

from __future__ import annotations

from pathlib import Path

from idserver.tls import create_self_signed_certificate

__all__ = ["CHEAP_PASSWORDS", "make_certificate", "write_config"]

# Cheap argon2 parameters keep the tests fast.
CHEAP_PASSWORDS = """
[passwords]
time_cost = 1
memory_cost = 8
parallelism = 1
"""


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """
    Create C{certificate.pem} and C{private-key.pem} for C{localhost} and
    C{127.0.0.1} in C{directory} unless they exist.

    @return: the certificate and key paths.
    """
    certificate = directory / "certificate.pem"
    key = directory / "private-key.pem"
    if not certificate.exists():
        create_self_signed_certificate(certificate, key)
    return certificate, key


def write_config(
    directory: Path,
    body: str = "",
    *,
    server: str = 'public_url = "https://id.example.com"\ndata_dir = "data"',
    tls: bool = True,
    http: str = 'listen = ["tcp:0:interface=127.0.0.1"]',
    ldap: str = "listen = []",
    name: str = "idserver.toml",
) -> Path:
    """
    Write a configuration file in C{directory} and return its path.

    The sections C{[server]}, C{[tls]} (with a fresh certificate, relative
    paths), C{[http]} and C{[ldap]} are filled with working values unless
    replaced; C{body} is appended as it is.
    """
    directory.mkdir(parents=True, exist_ok=True)
    parts = [f"[server]\n{server}\n"]
    if tls:
        make_certificate(directory)
        parts.append(
            '[tls]\ncertificate = "certificate.pem"\nprivate_key = "private-key.pem"\n'
        )
    parts.append(f"[http]\n{http}\n")
    parts.append(f"[ldap]\n{ldap}\n")
    parts.append(body)
    path = directory / name
    path.write_text("\n".join(parts))
    return path
