"""A real PostgreSQL server for the tests, from Debian's binaries, one per test session.

Debian keeps ``initdb``, ``pg_ctl`` and ``postgres`` in ``/usr/lib/postgresql/<major>/bin``,
off PATH (``.ci/run`` puts the newest on PATH). PostgreSQL refuses to run as root, and CI
runs the tests as root: then the server runs as ``nobody`` (or the ``postgres`` user when
the package made one) in a temporary directory that user owns. Without the binaries the
tests skip with the reason, and fail under ``CANARY_REQUIRE_SERVICES=1``.

The server listens on 127.0.0.1 on a free port, trusts local connections, and skips fsync
(a test's data need not survive a power cut; the store's transactions are the same).
``PgServer.database()`` makes a fresh, empty database, so each test starts from nothing.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from services import free_port, require_binary, wait_for

PG_DIRS = ("/usr/lib/postgresql/*/bin",)


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and there is neither a postgres nor a nobody user")


class PgServer:
    """``initdb`` + ``postgres`` in a temporary directory; ``stop()`` removes everything."""

    def __init__(self) -> None:
        self.initdb = require_binary("initdb", PG_DIRS)
        self.postgres = require_binary("postgres", PG_DIRS)
        self.port = free_port()
        self.user = "canary"
        self._as = _run_as()
        # The server's user must reach its directory: under /tmp, not a private TMPDIR.
        where = "/tmp" if self._as is not None and os.path.isdir("/tmp") else None
        self.dir = Path(tempfile.mkdtemp(prefix="canary-pg-", dir=where))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _preexec(self) -> None:
        if self._as is not None:
            os.setgid(self._as.pw_gid)
            os.setgroups([])
            os.setuid(self._as.pw_uid)

    def start(self) -> PgServer:
        if self._as is not None:
            os.chown(self.dir, self._as.pw_uid, self._as.pw_gid)
        env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
        subprocess.run(
            [
                self.initdb,
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            env=env,
            cwd=self.dir,
            preexec_fn=self._preexec,
        )
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                self.postgres,
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=32MB",
            ],
            stdout=log,
            stderr=log,
            env=env,
            cwd=self.dir,
            preexec_fn=self._preexec,
        )
        log.close()
        wait_for(self._ready, f"PostgreSQL on port {self.port} (log: {self.log})", timeout=60)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"postgres exited: {self.log.read_text(errors='replace')}")
        with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def database(self) -> str:
        """The URL of a new, empty database."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop a database made by ``database()``, closing whatever is still connected."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: no wait for clients
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def session_server() -> Iterator[PgServer]:
    """The body of a session fixture: one PostgreSQL server for every test that needs one."""
    server = PgServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
