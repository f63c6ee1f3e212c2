"""Start throwaway PostgreSQL, MariaDB and Redis servers on loopback for the tests.

The servers are reused by later test runs on the same machine (their data
lives under ``/tmp/hotcold-servers``); ``python -m tests.servers running``
names those listening, ``python -m tests.servers stop [postgres] [redis] [pg-replica]``
stops them (both by default); scripts/test.sh stops the ones its run
started. PostgreSQL refuses to run as root, so as root the cluster is created
and started as the ``postgres`` user with a data directory that user owns.
The cluster uses the C collation so that text sorts by code point in both
tiers, as the merged read path compares text. Two MariaDB servers (``mariadb``
and ``mariadb2``, run as the ``mysql`` user) give the two-server pair; their
test databases are created with the utf8mb4_nopad_bin collation for the same reason.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(os.environ.get("HOTCOLD_SERVERS_DIR", "/tmp/hotcold-servers"))
PG_PORT = int(os.environ.get("HOTCOLD_PG_PORT", 55432))
REDIS_PORT = int(os.environ.get("HOTCOLD_REDIS_PORT", 56379))
PG_REPLICA_PORT = int(os.environ.get("HOTCOLD_PG_REPLICA_PORT", 55433))
MARIADB_PORTS = {"mariadb": int(os.environ.get("HOTCOLD_MARIADB_PORT", 53306)),
                 "mariadb2": int(os.environ.get("HOTCOLD_MARIADB2_PORT", 53307))}


@dataclass
class Server:
    url: str | None
    reason: str = ""


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pg_bindir() -> str | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2])):
        if os.path.exists(os.path.join(candidate, "initdb")):
            found = candidate
    else:
        found = locals().get("found")
    if found:
        return found
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def ensure_postgres() -> Server:
    if os.environ.get("HOTCOLD_TEST_PG_URL"):
        return Server(os.environ["HOTCOLD_TEST_PG_URL"])
    url = f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
    if _port_open(PG_PORT):
        return Server(url)
    bindir = _pg_bindir()
    if bindir is None:
        return Server(None, "PostgreSQL server binaries not found (apt-get install -y postgresql)")
    pg_dir = ROOT / "postgres"
    data = pg_dir / "data"
    pg_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(ROOT, "postgres")
        shutil.chown(pg_dir, "postgres")
    try:
        if not (data / "PG_VERSION").exists():
            subprocess.run(
                _as_postgres([f"{bindir}/initdb", "-D", str(data), "-U", "postgres", "-A", "trust",
                              "-E", "UTF8", "--locale=C.UTF-8"]),
                check=True, capture_output=True, text=True,
            )
        options = (
            f"-p {PG_PORT} -c listen_addresses=127.0.0.1 -k {pg_dir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            _as_postgres([f"{bindir}/pg_ctl", "-D", str(data), "-o", options, "-l", str(pg_dir / "log"),
                          "-w", "-t", "60", "start"]),
            check=True, capture_output=True, text=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return Server(None, f"PostgreSQL could not start: {detail.strip()[-500:]}")
    for _ in range(100):
        if _port_open(PG_PORT):
            return Server(url)
        time.sleep(0.1)
    return Server(None, f"PostgreSQL did not listen on 127.0.0.1:{PG_PORT}")


def ensure_pg_replica() -> Server:
    """A streaming replica of the test cluster (``pg_basebackup -R``) on PG_REPLICA_PORT, for the throttle's
    replica-lag tests; its URL names the server (a test points an alias at its own database there)."""
    url = f"postgresql://postgres@127.0.0.1:{PG_REPLICA_PORT}/postgres"
    if _port_open(PG_REPLICA_PORT):
        return Server(url)
    primary, bindir = ensure_postgres(), _pg_bindir()
    if primary.url is None or os.environ.get("HOTCOLD_TEST_PG_URL") or bindir is None:
        return Server(None, primary.reason or "no PostgreSQL cluster of tests/servers.py to replicate")
    replica_dir = ROOT / "pg-replica"
    data = replica_dir / "data"
    shutil.rmtree(replica_dir, ignore_errors=True)  # a stopped replica is far behind: take a fresh copy
    replica_dir.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(replica_dir, "postgres")
    options = (f"-p {PG_REPLICA_PORT} -c listen_addresses=127.0.0.1 -k {replica_dir} -c fsync=off "
               "-c full_page_writes=off -c max_connections=200 -c hot_standby=on")
    try:
        subprocess.run(_as_postgres([f"{bindir}/pg_basebackup", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U",
                                     "postgres", "-D", str(data), "-R", "-X", "stream", "-c", "fast"]),
                       check=True, capture_output=True, text=True, timeout=300)
        subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", str(data), "-o", options, "-l",
                                     str(replica_dir / "log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, text=True)
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return Server(None, f"the PostgreSQL replica could not start: {str(detail).strip()[-500:]}")
    return Server(url) if _port_open(PG_REPLICA_PORT) else Server(None, "the PostgreSQL replica did not listen")


def ensure_redis() -> Server:
    if os.environ.get("HOTCOLD_TEST_REDIS_URL"):
        return Server(os.environ["HOTCOLD_TEST_REDIS_URL"])
    url = f"redis://127.0.0.1:{REDIS_PORT}/0"
    if _port_open(REDIS_PORT):
        return Server(url)
    binary = shutil.which("redis-server")
    if binary is None:
        return Server(None, "redis-server not found (apt-get install -y redis-server)")
    redis_dir = ROOT / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [binary, "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "yes", "--dir", str(redis_dir), "--pidfile", str(redis_dir / "redis.pid"),
             "--logfile", str(redis_dir / "log")],
            check=True, capture_output=True, text=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        return Server(None, f"Redis could not start: {exc}")
    for _ in range(100):
        if _port_open(REDIS_PORT):
            return Server(url)
        time.sleep(0.1)
    return Server(None, f"Redis did not listen on 127.0.0.1:{REDIS_PORT}")


class ThrowawayPostgres:
    """A PostgreSQL cluster of its own (initdb in a fresh directory, a free port) for a test that kills its
    server: never the shared one. ``kill()`` stops it the way a crash does (immediate: no checkpoint, every
    backend dropped), ``start()`` brings it back with its data; ``remove()`` stops it and deletes it."""

    def __init__(self) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found")
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="hotcold-throwaway-pg-"))
        self.data = self.dir / "data"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        subprocess.run(_as_postgres([f"{bindir}/initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                                     "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                       check=True, capture_output=True, text=True)
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        # synchronous_commit stays on: kill() is a crash, and a crash must keep every commit it answered
        # (with it off the server forgets the last ones, and a test of "no row lost" would blame the mover).
        # fsync=off is safe here: the machine's page cache outlives the server.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
                   "-c full_page_writes=off")
        subprocess.run(_as_postgres([f"{self.bindir}/pg_ctl", "-D", str(self.data), "-o", options,
                                     "-l", str(self.dir / "log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, text=True)

    def kill(self) -> None:
        subprocess.run(_as_postgres([f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "immediate", "-w",
                                     "stop"]), check=True, capture_output=True, text=True)

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(_as_postgres([f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "immediate",
                                         "stop"]), check=False, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def ensure_mariadb(name: str = "mariadb") -> Server:
    """A MariaDB server on 127.0.0.1 (root without a password over TCP), its datadir under ``ROOT/name``."""
    port = MARIADB_PORTS[name]
    url = f"mysql://root@127.0.0.1:{port}/mysql"
    if _port_open(port):
        return Server(url)
    server, install = shutil.which("mariadbd") or "/usr/sbin/mariadbd", shutil.which("mariadb-install-db")
    if not os.path.exists(server) or install is None:
        return Server(None, "MariaDB server binaries not found (apt-get install -y mariadb-server)")
    my_dir = ROOT / name
    data = my_dir / "data"
    my_dir.mkdir(parents=True, exist_ok=True)
    user = ["--user=mysql"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(my_dir, "mysql")
    try:
        if not (data / "mysql").exists():
            subprocess.run([install, "--no-defaults", *user, f"--datadir={data}",
                            "--auth-root-authentication-method=normal", "--skip-test-db"],
                           check=True, capture_output=True, text=True)
        with open(my_dir / "log", "ab") as log:
            subprocess.Popen(
                [server, "--no-defaults", *user, f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
                 f"--socket={my_dir}/mysqld.sock", f"--pid-file={my_dir}/mysqld.pid", "--local-infile=1",
                 "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=2", "--innodb-buffer-pool-size=256M",
                 "--innodb-log-file-size=256M", "--max-connections=300", "--character-set-server=utf8mb4",
                 "--collation-server=utf8mb4_nopad_bin", "--max-allowed-packet=256M"],
                stdout=log, stderr=log, start_new_session=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return Server(None, f"MariaDB could not start: {detail.strip()[-500:]}")
    for _ in range(300):
        if _port_open(port):
            return Server(url)
        time.sleep(0.1)
    return Server(None, f"MariaDB did not listen on 127.0.0.1:{port} (see {my_dir}/log)")


SERVERS = ("postgres", "redis", "pg-replica", "mariadb", "mariadb2")


def running() -> list[str]:
    """The servers listening on their ports now."""
    ports = {"postgres": PG_PORT, "redis": REDIS_PORT, "pg-replica": PG_REPLICA_PORT, **MARIADB_PORTS}
    return [name for name in SERVERS if _port_open(ports[name])]


def stop(names: tuple[str, ...] = SERVERS) -> None:
    """Stop the named servers of ``ROOT`` that are listening."""
    up = running()
    bindir = _pg_bindir()
    data = ROOT / "postgres" / "data"
    replica = ROOT / "pg-replica" / "data"
    if ("pg-replica" in names or "postgres" in names) and "pg-replica" in up and bindir and replica.exists():
        subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", str(replica), "-m", "fast", "stop"]), check=False)
    if "postgres" in names and "postgres" in up and bindir and data.exists():
        subprocess.run(_as_postgres([f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "stop"]), check=False)
    pidfile = ROOT / "redis" / "redis.pid"
    if "redis" in names and "redis" in up and pidfile.exists():
        subprocess.run(["kill", pidfile.read_text().strip()], check=False)
    for name in MARIADB_PORTS:
        pidfile = ROOT / name / "mysqld.pid"
        if name in names and name in up and pidfile.exists():
            subprocess.run(["kill", pidfile.read_text().strip()], check=False)


if __name__ == "__main__":
    command, *names = sys.argv[1:] or [""]
    if command == "stop" and set(names) <= set(SERVERS):
        stop(tuple(names) or SERVERS)
    elif command == "running" and not names:
        print(" ".join(running()))
    elif not command:
        print(ensure_postgres(), ensure_redis(), ensure_mariadb(), ensure_mariadb("mariadb2"))
    else:
        sys.exit("usage: python -m tests.servers [running | stop [postgres] [redis] [pg-replica] [mariadb] [mariadb2]]")
