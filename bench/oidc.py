"""
Benchmark of the OpenID Connect provider: requests per second and server
CPU per request for discovery, JWKS, authorization (single sign-on), token
(code exchange and refresh) and UserInfo, and logins per second against
the cost of argon2 alone.

Usage: .venv/bin/python bench/oidc.py [--duration 5] [--workers 3] [--rounds 2]

The daemon runs under twistd, pinned to CPU 0; the load generator runs in
worker processes pinned to CPU 1 (on a machine with one CPU nothing is
pinned). The server's CPU time comes from /proc/<pid>/stat (utime + stime)
before and after each measurement. The argon2 reference verifies the
benchmark user's password hash with the same parameters in a process
pinned to CPU 0 while the server idles. Login and reference runs
alternate and the table gives their ratio, because timings on shared
machines drift by tens of percent within minutes.
"""

from __future__ import annotations

import argparse
import html
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "benchmark password 1"
REDIRECT_URI = "https://app.example/callback"
SERVER_CPU = 0
CLIENT_CPU = 1


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = False
    return session


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat(5), utime and stime, counted after the
    # command name: indices 11 and 12 here.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """
    A daemon with its own data directory, one user and one client.
    """

    directory: Path
    base: str
    process: subprocess.Popen[bytes]
    client_id: str
    client_secret: str

    @property
    def issuer(self) -> str:
        return self.base + "/openid"

    def admin(self, *args: str, stdin: str | None = None) -> str:
        return subprocess.run(
            [
                str(BIN / "idserver-admin"),
                "--config",
                str(self.directory / "idserver.toml"),
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
        ).stdout


def start_server(directory: Path) -> Server:
    from idserver.tls import create_self_signed_certificate

    port = _free_port()
    create_self_signed_certificate(directory / "cert.pem", directory / "key.pem")
    (directory / "idserver.toml").write_text(
        f"""
[server]
name = "Benchmark"
public_url = "https://127.0.0.1:{port}"
data_dir = "data"
[tls]
certificate = "cert.pem"
private_key = "key.pem"
[http]
listen = ["ssl:{port}:interface=127.0.0.1"]
[ldap]
listen = []
[oidc]
# Codes are collected first and exchanged later.
code_lifetime = 3600
"""
    )
    server = Server(directory, f"https://127.0.0.1:{port}", None, "", "")  # type: ignore[arg-type]
    server.admin("init")
    server.admin(
        "user",
        "add",
        "bench",
        "--email",
        "bench@example.com",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    client = json.loads(
        server.admin(
            "client", "add", "--name", "Bench", "--redirect-uri", REDIRECT_URI, "--json"
        )
    )
    server.client_id, server.client_secret = (
        client["client_id"],
        client["client_secret"],
    )

    command = [
        str(BIN / "twistd"),
        "-n",
        "--pidfile=",
        "--logfile",
        str(directory / "twistd.log"),
        "idserver",
        "--config",
        str(directory / "idserver.toml"),
    ]
    if (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", str(SERVER_CPU), *command]
    server.process = subprocess.Popen(command, cwd=directory)
    with _session() as session:
        for _ in range(200):
            try:
                if session.get(server.base + "/healthz", timeout=1).status_code == 200:
                    return server
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"the daemon did not start; see {directory / 'twistd.log'}")


def sign_in(
    base: str, session: requests.Session, return_to: str = "/login/done"
) -> requests.Response:
    page = session.get(base + "/login?" + urlencode({"return_to": return_to}))
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', page.text)
    }
    fields.update(username="bench", password=PASSWORD)
    return session.post(base + "/login", data=fields, allow_redirects=False)


def auth_url(issuer: str, client_id: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email groups",
        "state": "s",
        "nonce": "n",
    }
    return issuer + "/auth?" + urlencode(query)


# Worker jobs: each runs in a process pinned to the client CPU and returns
# what it counted or collected.


class _Worker:
    """
    The load of one worker process for one measurement.
    """

    def __init__(self, info: dict[str, Any], duration: float) -> None:
        self.info = info
        self.base = info["base"]
        self.issuer = info["base"] + "/openid"
        self.auth = (info["client_id"], info["client_secret"])
        self.session = _session()
        self.deadline = time.monotonic() + duration

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    def get_repeatedly(self, url: str, headers: dict[str, str] | None = None) -> int:
        count = 0
        while self.running():
            self.session.get(url, headers=headers).raise_for_status()
            count += 1
        return count

    def discovery(self, inputs: list[str]) -> int:
        return self.get_repeatedly(self.base + "/.well-known/openid-configuration")

    def jwks(self, inputs: list[str]) -> int:
        return self.get_repeatedly(self.issuer + "/jwks")

    def userinfo(self, inputs: list[str]) -> int:
        headers = {"Authorization": "Bearer " + inputs[0]}
        return self.get_repeatedly(self.issuer + "/me", headers)

    def authorize(self, inputs: list[str]) -> list[str]:
        # Every request reuses the signed-in session: single sign-on.
        self.session.cookies.set(
            "idserver_session", self.info["cookie"], domain="127.0.0.1"
        )
        url = auth_url(self.issuer, self.info["client_id"])
        codes = []
        while self.running():
            response = self.session.get(url, allow_redirects=False)
            query = parse_qs(urlsplit(response.headers["Location"]).query)
            codes.append(query["code"][0])
        return codes

    def token(self, data: dict[str, str]) -> dict[str, Any]:
        response = self.session.post(self.issuer + "/token", auth=self.auth, data=data)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def exchange(self, inputs: list[str]) -> list[tuple[str, str]]:
        pairs = []
        for code in inputs:
            data = {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
            }
            tokens = self.token(data)
            pairs.append((tokens["access_token"], tokens["refresh_token"]))
        return pairs

    def refresh(self, inputs: list[str]) -> int:
        refresh_token, count = inputs[0], 0
        while self.running():
            data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
            refresh_token = self.token(data)["refresh_token"]
            count += 1
        return count

    def login(self, inputs: list[str]) -> int:
        count = 0
        while self.running():
            with _session() as browser:
                response = sign_in(self.base, browser)
            if response.status_code != 303:
                raise RuntimeError(f"login failed with HTTP {response.status_code}")
            count += 1
        return count


def _job(args: tuple[str, dict[str, Any], float, list[str]]) -> Any:
    """
    Run one worker's share of a measurement, in a worker process.
    """
    kind, info, duration, inputs = args
    _pin(CLIENT_CPU)
    return getattr(_Worker(info, duration), kind)(inputs)


def argon2_reference(encoded: str, duration: float) -> float:
    """
    Return argon2 verifications per second on the server's CPU, one thread.
    """
    code = (
        "import argon2, os, sys, time\n"
        f"os.sched_setaffinity(0, {{{SERVER_CPU}}}) if os.cpu_count() > 1 else None\n"
        "hasher = argon2.PasswordHasher()\n"
        f"encoded, password, duration = {encoded!r}, {PASSWORD!r}, {duration!r}\n"
        "count, start = 0, time.monotonic()\n"
        "while time.monotonic() - start < duration:\n"
        "    hasher.verify(encoded, password); count += 1\n"
        "print(count / (time.monotonic() - start))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return float(output.stdout)


@dataclass
class Measurement:
    name: str
    requests: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.requests if self.requests else float("nan")


def measure(
    pool: Any,
    server: Server,
    info: dict[str, Any],
    kind: str,
    workers: int,
    duration: float,
    inputs: list[list[str]] | None = None,
) -> tuple[Measurement, list[Any]]:
    pid = server.process.pid
    jobs = [(kind, info, duration, inputs[i] if inputs else []) for i in range(workers)]
    cpu_before, start = _cpu_seconds(pid), time.monotonic()
    results = pool.map(_job, jobs)
    seconds, cpu = time.monotonic() - start, _cpu_seconds(pid) - cpu_before
    count = sum(len(r) if isinstance(r, list) else r for r in results)
    return Measurement(kind, count, seconds, cpu), results


def stored_hash(server: Server) -> str:
    import sqlite3

    connection = sqlite3.connect(server.directory / "data" / "idserver.sqlite3")
    (encoded,) = connection.execute(
        "SELECT password_hash FROM users WHERE username = 'bench'"
    ).fetchone()
    connection.close()
    return str(encoded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per measurement"
    )
    parser.add_argument(
        "--workers", type=int, default=3, help="load generator processes"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating login and argon2 runs"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="idserver-bench-") as temporary:
        server = start_server(Path(temporary))
        try:
            run(server, args)
        finally:
            server.process.terminate()
            server.process.wait(timeout=30)


def run(server: Server, args: argparse.Namespace) -> None:
    with _session() as browser:
        sign_in(server.base, browser)
        cookie = browser.cookies.get("idserver_session")
    info = {
        "base": server.base,
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "cookie": cookie,
    }
    rows: list[Measurement] = []
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        # Warm up connections, imports and caches.
        measure(pool, server, info, "discovery", args.workers, 1.0)
        for kind in ("discovery", "jwks"):
            rows.append(
                measure(pool, server, info, kind, args.workers, args.duration)[0]
            )
        authorize, code_lists = measure(
            pool, server, info, "authorize", args.workers, args.duration
        )
        rows.append(authorize)
        exchange, token_lists = measure(
            pool, server, info, "exchange", args.workers, 0, code_lists
        )
        rows.append(exchange)
        refresh_inputs = [[tokens[0][1]] for tokens in token_lists]
        rows.append(
            measure(
                pool,
                server,
                info,
                "refresh",
                args.workers,
                args.duration,
                refresh_inputs,
            )[0]
        )
        access_inputs = [[tokens[-1][0]] for tokens in token_lists]
        rows.append(
            measure(
                pool,
                server,
                info,
                "userinfo",
                args.workers,
                args.duration,
                access_inputs,
            )[0]
        )

        encoded = stored_hash(server)
        logins, references = [], []
        for _ in range(args.rounds):
            references.append(argon2_reference(encoded, args.duration))
            logins.append(
                measure(pool, server, info, "login", args.workers, args.duration)[0]
            )

    login = Measurement(
        "login",
        sum(m.requests for m in logins),
        sum(m.seconds for m in logins),
        sum(m.cpu for m in logins),
    )
    ceiling = sum(references) / len(references)
    ratios = [m.rate / r for m, r in zip(logins, references, strict=True)]
    report = {
        "rows": [
            {
                "name": m.name,
                "requests": m.requests,
                "per_second": m.rate,
                "server_cpu_ms": m.cpu_ms,
            }
            for m in [*rows, login]
        ],
        "argon2_verifications_per_second": ceiling,
        "login_to_argon2_ratios": ratios,
        "workers": args.workers,
        "duration": args.duration,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        "| endpoint | requests | requests/s | server CPU ms/request"
        " | requests/s one server CPU allows |"
    )
    print("|---|---:|---:|---:|---:|")
    for row in report["rows"]:
        cpu_ms = row["server_cpu_ms"]
        print(
            f"| {row['name']} | {row['requests']} | {row['per_second']:.0f}"
            f" | {cpu_ms:.2f} | {1000 / cpu_ms:.0f} |"
        )
    print()
    print(f"argon2 alone: {ceiling:.1f} verifications/s on one CPU")
    print(
        "logins/s ÷ argon2 verifications/s per round: "
        + ", ".join(f"{r:.2f}" for r in ratios)
    )


if __name__ == "__main__":
    main()
