"""A real PostgreSQL server for the tests: ``initdb`` on a temp dir, ``postgres`` on a loopback port.

The binaries come from Debian's ``postgresql`` package, which ``scripts/_setup.sh`` installs (as
root, with apt-get). PostgreSQL refuses to run as root, so under root the server runs as the
package's ``postgres`` user (or ``nobody``). Trust authentication, loopback only, removed afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import free_port


def find_bindir() -> Path | None:
    """The directory of ``initdb`` and ``postgres``: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("initdb")
    if on_path and Path(on_path).resolve().with_name("postgres").exists():
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def unavailable() -> str | None:
    """Why no server can be started here (printed as the skip reason), or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (scripts/_setup.sh installs vlrouter[test])"
    if find_bindir() is None:
        return "PostgreSQL server binaries not found (scripts/_setup.sh installs Debian's postgresql as root)"
    return None


class PostgresServer:
    """One throwaway cluster; ``database()`` hands out a fresh database URL per test."""

    user = "vlrouter"

    def __init__(self):
        self.bindir = find_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="vlrouter-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.run_as = None
        if os.geteuid() == 0:
            name = "postgres" if _has_user("postgres") else "nobody"
            self.run_as = pwd.getpwnam(name)
            os.chown(self.dir, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run([self.bindir / "initdb", "-D", self.data, "-U", self.user, "--auth=trust", "-E", "UTF8",
                   "--no-sync"], check=True)
        self.log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        self._count = 0
        # postgres binds its own port (it cannot take an inherited socket): if another process took the
        # free port first, the server exits with "Address already in use" and starts again on a new one
        for attempt in range(1, 4):
            self.admin = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
            try:
                self.start()
                break
            except RuntimeError as exc:
                if "already in use" not in str(exc) or attempt == 3:
                    raise
                self.port = free_port()

    def start(self) -> None:
        """Start (or restart, after ``halt``) the server on the same port and data."""
        self.proc = self._run([self.bindir / "postgres", "-D", self.data, "-h", "127.0.0.1", "-p", self.port,
                               "-k", self.dir, "-c", "fsync=off", "-c", "max_connections=200"], wait=False)
        self._wait_ready()

    def halt(self) -> None:
        """Stop the server, dropping its connections (fast shutdown); ``start`` brings it back."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _run(self, cmd: list, *, check: bool = False, wait: bool = True):
        cmd = [str(c) for c in cmd]
        kwargs = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []}
        if not wait:
            return subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir, **kwargs)
        return subprocess.run(cmd, capture_output=True, check=check, cwd=self.dir, timeout=120, **kwargs)

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(self.admin, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {(self.dir / 'server.log').read_text()[-2000:]}"
                                       ) from None
                time.sleep(0.1)

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        self._count += 1
        name = f"log_{os.getpid()}_{self._count}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop the server and remove its files."""
        self.halt()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
