"""
Compare the LDAP server of idserver with OpenLDAP's slapd under the same
load.

Both servers get the same users (10,000 by default) and groups, run pinned
to one CPU, and are driven in turn by the same load generator: several
python-ldap processes pinned to another CPU. For each kind of request the
script prints the server CPU time per request (from /proc/<pid>/stat) and
the requests per second, and the ratio idserver/slapd. Each measurement is
repeated (alternating the servers, since timings on shared machines drift)
and the median is reported.

Requests:

 - base: a base-scope search of one user's DN;
 - filter: (&(objectclass=user)(|(username=X)(mail=X))) below ou=users;
 - group: (&(objectclass=user)(memberOf=<X's group>)(username=X));
 - bind: a simple bind as a user with its password (argon2id in both).

slapd's standard schema has neither objectClass user nor the attribute
username, so slapd gets the same filters with inetOrgPerson and uid, and
its users are named uid=<username>. slapd checks the same argon2id hashes
(its argon2 module), with memberOf kept by its memberof overlay, and
equality indexes on the attributes the filters use.

Usage: .venv/bin/python bench/ldap.py [--users N] [--requests N] ...
Run it from the repository root; it needs slapd, slapadd, slappasswd and
taskset, and two CPUs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import argon2

# This script is named ldap.py, so its directory, which Python puts first
# on the path, would shadow python-ldap.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import ldap  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent
SUFFIX = "dc=cloudron"
PASSWORD = "bench password 1"
GROUPS = 50
SERVER_CPU = 0
CLIENT_CPU = 1

# Requests of one kind: (kind, argument tuple) pairs handed to workers.
Request = tuple[str, tuple[Any, ...]]


@dataclass
class Server:
    """
    A running server under test.

    @ivar pid: the process whose CPU time is measured.
    @ivar url: where clients connect.
    @ivar bind_dn: the service account the workers bind as.
    """

    name: str
    pid: int
    url: str
    bind_dn: str
    bind_password: str
    stop: Any


def cpu_seconds(pid: int) -> float:
    """
    Return the user and system CPU time of process C{pid} and its threads.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of proc(5); the split above
    # starts at field 3.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            connection = ldap.initialize(url)
            connection.search_s("", ldap.SCOPE_BASE)
            connection.unbind_s()
            return
        except ldap.LDAPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# Data


def usernames(count: int) -> list[str]:
    return [f"user{i:05d}" for i in range(count)]


def group_of(index: int) -> str:
    return f"group{index % GROUPS:02d}"


# idserver


IDSERVER_CONFIG = """\
[server]
public_url = "https://127.0.0.1:1"
data_dir = "data"

[tls]
certificate = "certificate.pem"
private_key = "private-key.pem"

[http]
listen = ["tcp:0:interface=127.0.0.1"]

[ldap]
listen = ["tcp:{port}:interface=127.0.0.1"]
suffix = "{suffix}"
"""


def load_idserver(directory: Path, count: int, bind_users: int) -> None:
    """
    Create the database of an idserver instance in C{directory} with
    C{count} users and their groups, through the directory API. Runs in a
    child process, which owns its reactor.
    """
    from twisted.internet.task import react

    from idserver.admin.command import database_path
    from idserver.config import load_config
    from idserver.directory.sqlite import open_directory
    from idserver.ldap.access import (
        ALLOWLIST_KEY,
        ENABLED_KEY,
        SECRET_HASH_KEY,
        hash_generated_secret,
    )
    from idserver.passwords import Argon2Hasher

    config = load_config(directory / "idserver.toml")
    config.server.data_dir.mkdir(mode=0o700, exist_ok=True)

    async def load(reactor: Any) -> None:
        passwords = config.passwords
        hasher = Argon2Hasher(
            reactor,
            time_cost=passwords.time_cost,
            memory_cost=passwords.memory_cost,
            parallelism=passwords.parallelism,
            max_threads=2,
            max_queue=count,
        )
        hasher.start()
        store = open_directory(database_path(config), reactor=reactor, hasher=hasher)
        ids = {}
        groups = {}
        for index in range(GROUPS):
            group = await store.add_group(group_of(index))
            groups[group.name] = group.id
        for index, name in enumerate(usernames(count)):
            user = await store.add_user(
                name, f"{name}@example.com", display_name=f"User {index}"
            )
            ids[name] = user.id
            await store.add_member(groups[group_of(index)], user.id)
            if index < bind_users:
                await store.set_password(user.id, PASSWORD)
        await store.set_setting(ENABLED_KEY, True)
        await store.set_setting(ALLOWLIST_KEY, ["127.0.0.1"])
        await store.set_setting(SECRET_HASH_KEY, hash_generated_secret("bench-secret"))
        (directory / "ids.json").write_text(json.dumps(ids))
        store.close()
        hasher.stop()

    react(load)


def start_idserver(
    work: Path, count: int, bind_users: int
) -> tuple[Server, dict[str, str]]:
    from idserver.tls import create_self_signed_certificate

    directory = work / "idserver"
    directory.mkdir()
    port = free_port()
    (directory / "idserver.toml").write_text(
        IDSERVER_CONFIG.format(port=port, suffix=SUFFIX)
    )
    create_self_signed_certificate(
        directory / "certificate.pem", directory / "private-key.pem"
    )
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--load-idserver",
            str(directory),
            str(count),
            str(bind_users),
        ],
        check=True,
        cwd=REPOSITORY,
    )
    ids = json.loads((directory / "ids.json").read_text())

    twistd = Path(sys.executable).parent / "twistd"
    log = open(directory / "twistd.log", "w")
    process = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(SERVER_CPU),
            str(twistd),
            "-n",
            "--pidfile=",
            "--logfile",
            str(directory / "twistd.log"),
            "idserver",
            "--config",
            str(directory / "idserver.toml"),
        ],
        cwd=REPOSITORY,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"ldap://127.0.0.1:{port}"
    wait_for(url)

    def stop() -> None:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.close()

    server = Server(
        "idserver",
        process.pid,
        url,
        f"cn=admin,ou=system,{SUFFIX}",
        "bench-secret",
        stop,
    )
    return server, ids


# slapd


SLAPD_CONFIG = """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {directory}/slapd.pid

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: memberof
olcModuleLoad: argon2

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif
include: file:///etc/ldap/schema/nis.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: 1000

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {suffix}
olcDbDirectory: {directory}/db
olcRootDN: cn=admin,{suffix}
olcRootPW: {root_password}
olcDbMaxSize: 1073741824
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcDbIndex: mail eq
olcDbIndex: cn eq
olcDbIndex: member eq
olcDbIndex: memberOf eq
olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none
olcAccess: {{1}}to * by * read

dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {{0}}memberof

"""


def slapd_data(count: int, bind_users: int, password_hash: str) -> str:
    parts = [
        f"dn: {SUFFIX}\nobjectClass: top\nobjectClass: domain\ndc: cloudron\n",
        f"dn: ou=users,{SUFFIX}\nobjectClass: organizationalUnit\nou: users\n",
        f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n",
    ]
    members: dict[str, list[str]] = {}
    for index, name in enumerate(usernames(count)):
        dn = f"uid={name},ou=users,{SUFFIX}"
        group = group_of(index)
        members.setdefault(group, []).append(dn)
        lines = [
            f"dn: {dn}",
            "objectClass: inetOrgPerson",
            "objectClass: posixAccount",
            f"uid: {name}",
            f"cn: User {index}",
            f"sn: {index}",
            "givenName: User",
            f"displayName: User {index}",
            f"mail: {name}@example.com",
            f"uidNumber: {10000 + index}",
            f"gidNumber: {10000 + index}",
            f"homeDirectory: /home/{name}",
            "loginShell: /bin/sh",
            f"memberOf: cn={group},ou=groups,{SUFFIX}",
        ]
        if index < bind_users:
            lines.append(f"userPassword: {{ARGON2}}{password_hash}")
        parts.append("\n".join(lines) + "\n")
    for group, dns in sorted(members.items()):
        lines = [
            f"dn: cn={group},ou=groups,{SUFFIX}",
            "objectClass: groupOfNames",
            f"cn: {group}",
        ]
        lines.extend(f"member: {dn}" for dn in dns)
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts) + "\n"


def start_slapd(work: Path, count: int, bind_users: int) -> Server:
    directory = work / "slapd"
    (directory / "slapd.d").mkdir(parents=True)
    (directory / "db").mkdir()
    root_password = subprocess.run(
        ["slappasswd", "-s", "bench-secret"], check=True, capture_output=True, text=True
    ).stdout.strip()
    (directory / "config.ldif").write_text(
        SLAPD_CONFIG.format(
            directory=directory, suffix=SUFFIX, root_password=root_password
        )
    )
    # The same argon2id parameters as idserver's defaults.
    password_hash = argon2.PasswordHasher().hash(PASSWORD)
    (directory / "data.ldif").write_text(slapd_data(count, bind_users, password_hash))
    subprocess.run(
        [
            "slapadd",
            "-n",
            "0",
            "-F",
            str(directory / "slapd.d"),
            "-l",
            str(directory / "config.ldif"),
        ],
        check=True,
    )
    subprocess.run(
        [
            "slapadd",
            "-q",
            "-n",
            "1",
            "-F",
            str(directory / "slapd.d"),
            "-l",
            str(directory / "data.ldif"),
        ],
        check=True,
    )
    port = free_port()
    url = f"ldap://127.0.0.1:{port}"
    subprocess.run(
        [
            "taskset",
            "-c",
            str(SERVER_CPU),
            "slapd",
            "-h",
            url + "/",
            "-F",
            str(directory / "slapd.d"),
        ],
        check=True,
    )
    wait_for(url)
    pid = int((directory / "slapd.pid").read_text())

    def stop() -> None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            if not os.path.exists(f"/proc/{pid}"):
                return
            time.sleep(0.1)

    return Server("slapd", pid, url, f"cn=admin,{SUFFIX}", "bench-secret", stop)


# Requests


def build_requests(
    server: str,
    ids: dict[str, str],
    count: int,
    number: int,
    bind_users: int,
    seed: int,
) -> dict[str, list[Request]]:
    """
    Build the same sequence of requests for either server; only the names
    and filters differ as the schemas require.
    """
    rng = random.Random(seed)
    picks = [rng.randrange(count) for _ in range(number)]
    names = usernames(count)
    users = f"ou=users,{SUFFIX}"

    def user_dn(name: str) -> str:
        if server == "idserver":
            return f"cn={ids[name]},{users}"
        return f"uid={name},{users}"

    person = "user" if server == "idserver" else "inetOrgPerson"
    login = "username" if server == "idserver" else "uid"
    requests: dict[str, list[Request]] = {
        "base": [],
        "filter": [],
        "group": [],
        "bind": [],
    }
    for index in picks:
        name = names[index]
        group = f"cn={group_of(index)},ou=groups,{SUFFIX}"
        requests["base"].append(
            ("search", (user_dn(name), ldap.SCOPE_BASE, "(objectClass=*)"))
        )
        requests["filter"].append(
            (
                "search",
                (
                    users,
                    ldap.SCOPE_SUBTREE,
                    f"(&(objectclass={person})(|({login}={name})(mail={name})))",
                ),
            )
        )
        requests["group"].append(
            (
                "search",
                (
                    users,
                    ldap.SCOPE_SUBTREE,
                    f"(&(objectclass={person})(memberOf={group})({login}={name}))",
                ),
            )
        )
    for index in range(number):
        name = names[index % bind_users]
        requests["bind"].append(("bind", (f"uid={name},{users}", PASSWORD)))
    return requests


def worker(
    url: str,
    bind_dn: str,
    bind_password: str,
    requests: list[Request],
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    os.sched_setaffinity(0, {CLIENT_CPU})
    connection = ldap.initialize(url)
    connection.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
    connection.simple_bind_s(bind_dn, bind_password)
    ready.put(None)
    go.wait()
    entries = 0
    for kind, arguments in requests:
        if kind == "search":
            entries += len(connection.search_s(*arguments))
        else:
            connection.simple_bind_s(*arguments)
            entries += 1
    connection.unbind_s()
    results.put(entries)


def measure(
    server: Server, requests: list[Request], workers: int
) -> tuple[float, float]:
    """
    Send C{requests} from C{workers} processes and return the server's CPU
    seconds and the wall time they took.
    """
    context = multiprocessing.get_context("fork")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    shares = [requests[i::workers] for i in range(workers)]
    processes = [
        context.Process(
            target=worker,
            args=(
                server.url,
                server.bind_dn,
                server.bind_password,
                share,
                ready,
                go,
                results,
            ),
        )
        for share in shares
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=60)
    cpu_before = cpu_seconds(server.pid)
    start = time.monotonic()
    go.set()
    entries = sum(results.get(timeout=3600) for _ in processes)
    wall = time.monotonic() - start
    cpu = cpu_seconds(server.pid) - cpu_before
    for process in processes:
        process.join()
    if entries != len(requests):
        raise RuntimeError(
            f"{server.name}: {entries} entries for {len(requests)} requests; every"
            " request must return exactly one entry"
        )
    return cpu, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10000, help="users in each server")
    parser.add_argument(
        "--requests", type=int, default=4000, help="search requests per measurement"
    )
    parser.add_argument(
        "--binds", type=int, default=60, help="bind requests per measurement"
    )
    parser.add_argument(
        "--workers", type=int, default=4, help="load generator processes"
    )
    parser.add_argument("--rounds", type=int, default=3, help="measurements per server")
    parser.add_argument(
        "--keep", action="store_true", help="keep the working directory"
    )
    parser.add_argument("--load-idserver", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.load_idserver:
        directory, count, bind_users = args.load_idserver
        load_idserver(Path(directory), int(count), int(bind_users))
        return 0

    if len(os.sched_getaffinity(0)) < 2:
        parser.error("two CPUs are needed: one for the server, one for the clients")
    bind_users = min(20, args.users)
    work = Path(tempfile.mkdtemp(prefix="idserver-bench-"))
    servers: list[Server] = []
    try:
        print(f"Loading {args.users} users into idserver and slapd ...", flush=True)
        idserver, ids = start_idserver(work, args.users, bind_users)
        servers.append(idserver)
        slapd = start_slapd(work, args.users, bind_users)
        servers.append(slapd)

        plans = {
            server.name: build_requests(
                server.name, ids, args.users, args.requests, bind_users, seed=1
            )
            for server in servers
        }
        for name in plans:
            plans[name]["bind"] = plans[name]["bind"][: args.binds]

        # Warm up: load the snapshot and the caches of both servers.
        for server in servers:
            for kind in ("base", "filter", "group"):
                measure(server, plans[server.name][kind][:200], 1)

        results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        for round_number in range(args.rounds):
            for kind in ("base", "filter", "group", "bind"):
                order = servers if round_number % 2 == 0 else servers[::-1]
                for server in order:
                    requests = plans[server.name][kind]
                    cpu, wall = measure(server, requests, args.workers)
                    results.setdefault((server.name, kind), []).append(
                        (cpu, wall, len(requests))
                    )
            print(f"round {round_number + 1} of {args.rounds} done", flush=True)

        report(args, results)
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"Kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def report(
    args: argparse.Namespace,
    results: dict[tuple[str, str], list[tuple[float, float, int]]],
) -> None:
    labels = {
        "base": "base lookup of one user",
        "filter": "(&(objectclass=user)(|(username=X)(mail=X)))",
        "group": "(&(objectclass=user)(memberOf=G)(username=X))",
        "bind": "simple bind as a user (argon2id)",
    }
    print()
    print(
        f"{args.users} users, {GROUPS} groups; {args.requests} searches or"
        f" {args.binds} binds per measurement from {args.workers} python-ldap"
        f" processes on CPU {CLIENT_CPU}; servers on CPU {SERVER_CPU};"
        f" median of {args.rounds} rounds."
    )
    print(f"Python {platform.python_version()}, {platform.machine()}, {cpu_model()}")
    print(
        "slapd gets the same filters with objectClass inetOrgPerson and uid in"
        " place of user and username, which its schema lacks."
    )
    print()
    header = (
        f"{'request':<48} {'idserver':>12} {'slapd':>12} {'ratio':>7}"
        f"   {'idserver':>10} {'slapd':>10} {'ratio':>7}"
    )
    print(f"{'':<48} {'CPU ms per request':^33}   {'requests per second':^29}")
    print(header)
    for kind, label in labels.items():
        cpu = {}
        rate = {}
        for name in ("idserver", "slapd"):
            runs = results[(name, kind)]
            cpu[name] = statistics.median(c / n for c, _, n in runs) * 1000
            rate[name] = statistics.median(n / w for _, w, n in runs)
        print(
            f"{label:<48} {cpu['idserver']:>12.3f} {cpu['slapd']:>12.3f}"
            f" {cpu['idserver'] / cpu['slapd']:>7.2f}"
            f"   {rate['idserver']:>10.0f} {rate['slapd']:>10.0f}"
            f" {rate['idserver'] / rate['slapd']:>7.2f}"
        )


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
