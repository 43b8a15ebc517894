"""A real PostgreSQL server for tests: a throwaway cluster (Debian's `postgresql` package) in a
temp dir, on 127.0.0.1 and a free port, run as the `postgres` system user (PostgreSQL refuses
to run as root), and a fresh database per test or daemon.

One server per pytest process, started on first use and stopped at exit (`shared_server()`).
Set OWNCASTD_TEST_STORE=postgresql to run the daemons of the API tests on it (tests/conftest.py).
"""
from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time

PG_USER = "postgres"


def pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_postgres(argv: list[str], **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        argv = ["runuser", "-u", PG_USER, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, **kw)


class PostgresServer:
    def __init__(self):
        from conftest import free_port
        self.dir = tempfile.mkdtemp(prefix="oc-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self._names = itertools.count(1)
        self.started = False

    def start(self) -> "PostgresServer":
        if os.geteuid() == 0:
            ent = pwd.getpwnam(PG_USER)
            os.chown(self.dir, ent.pw_uid, ent.pw_gid)
        # --no-locale: C collation and messages, the same on every machine.
        out = _as_postgres([pg_bin("initdb"), "-D", self.data, "-U", PG_USER, "-A", "trust",
                            "--no-locale", "-E", "UTF8", "--no-sync"])
        if out.returncode:
            raise RuntimeError(f"initdb failed: {out.stderr}")
        self.resume()
        return self

    def resume(self) -> None:
        """Start the (initialised) cluster: at first, and again after `pause()`."""
        # Small and fast: no fsync (a test cluster), sockets only on loopback TCP and our dir.
        opts = (f"-p {self.port} -h 127.0.0.1 -k {self.dir} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
                "-c shared_buffers=32MB")
        out = _as_postgres([pg_bin("pg_ctl"), "-D", self.data, "-l",
                            os.path.join(self.dir, "server.log"), "-o", opts, "-w", "-t", "30",
                            "start"])
        if out.returncode:
            raise RuntimeError(f"pg_ctl start failed: {out.stderr}{self.log()}")
        self.started = True

    def pause(self) -> None:
        """Stop the server (an outage), keeping its data for `resume()`."""
        _as_postgres([pg_bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"])
        self.started = False

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "server.log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg
        name = f"{prefix}{os.getpid()}_{next(self._names)}_{int(time.time() * 1000) % 100000}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            _as_postgres([pg_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop"])
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


_shared: PostgresServer | None = None


def shared_server() -> PostgresServer:
    """This pytest process's server, started on first use and stopped when it exits."""
    global _shared
    if _shared is None:
        server = PostgresServer()
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        _shared = server
        atexit.register(server.stop)
    return _shared
