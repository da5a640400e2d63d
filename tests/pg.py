"""Find or start a PostgreSQL server for the tests, and hand out private databases.

Order (issue 11, item 5):

1. ``WATCHER_TEST_SKIP_PG=1``: the caller opted out; PostgreSQL tests skip with that reason.
2. ``WATCHER_TEST_PG_DSN``: use that server (it must answer; no fallback hides a typo).
3. A server answering on 127.0.0.1:5432 as ``postgres`` (trust auth), as on CI machines.
4. Otherwise a private cluster in a temporary directory on a free port, stopped at the end:
   initdb + pg_ctl from /usr/lib/postgresql/*/bin, run as the ``postgres`` user when we are
   root. Missing binaries are installed as root with ``tests/system_deps.sh postgresql``.
5. Otherwise the tests FAIL with a one-line reason: they never skip silently.

Each pytest(-xdist) worker process resolves a server once and creates its own database,
dropped at session end; tests get a fresh schema inside it (see ``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

REPO = Path(__file__).resolve().parent.parent
SYSTEM_DEPS = REPO / "tests" / "system_deps.sh"
DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
INSTALL_LOCK = Path(tempfile.gettempdir()) / "cce-watcher-test-pg-install.lock"
SKIP_ENV = "WATCHER_TEST_SKIP_PG"
DSN_ENV = "WATCHER_TEST_PG_DSN"


class PgUnavailable(Exception):
    """No server and no way to start one; the message is the one-line reason."""


@dataclass
class Server:
    """A reachable server: its admin DSN, and how to stop it if we started it."""

    dsn: str
    origin: str  # "WATCHER_TEST_PG_DSN", "127.0.0.1:5432" or "private cluster in ..."
    datadir: Path | None = None
    run_as: str | None = None
    bindir: Path | None = None

    options: str = ""  # postgres server options of a private cluster

    def start(self) -> None:
        """Start a private cluster (again) and wait until it accepts connections."""
        if self.datadir is None:
            raise RuntimeError("not a private cluster, or already removed")
        self._pg_ctl(
            "-o",
            self.options,
            "-l",
            str(self.datadir.parent / "server.log"),
            "-w",
            "-t",
            "120",
            "start",
        )

    def halt(self, mode: str = "immediate") -> None:
        """Stop a private cluster, keeping its data. "immediate" is a crash: with this
        cluster's fsync/synchronous_commit off, the last commits may be lost; "fast" is a
        clean shutdown that keeps every commit."""
        if self.datadir is not None:
            self._pg_ctl("-m", mode, "-w", "stop")

    def stop(self) -> None:
        """Stop a private cluster and remove its directory; nothing for external servers."""
        if self.datadir is None or self.bindir is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.halt()
        shutil.rmtree(self.datadir.parent, ignore_errors=True)
        self.datadir = None

    def _pg_ctl(self, *args: str) -> None:
        if self.bindir is None or self.datadir is None:
            raise RuntimeError("not a private cluster")
        _run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args],
            run_as=self.run_as,
            timeout=180,
        )


def answers(dsn: str) -> str | None:
    """None if the server accepts a connection and ``SELECT 1``, else psycopg's reason."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def find_bindir() -> Path | None:
    """The newest Debian PostgreSQL bin directory with initdb and pg_ctl, if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for bindir in reversed(found):
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def resolve(env: dict[str, str] | None = None) -> Server:
    """Decide which server the tests use (see the module docstring). Raises PgUnavailable."""
    env = dict(os.environ if env is None else env)
    if dsn := env.get(DSN_ENV, "").strip():
        if (reason := answers(dsn)) is not None:
            raise PgUnavailable(f"{DSN_ENV} is set but the server does not answer: {reason}")
        return Server(dsn=dsn, origin=DSN_ENV)
    if answers(DEFAULT_DSN) is None:
        return Server(dsn=DEFAULT_DSN, origin="127.0.0.1:5432")
    return start_private_cluster()


def ensure_binaries() -> Path:
    """The PostgreSQL bin directory, installing Debian's ``postgresql`` as root if needed."""
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0:
        raise PgUnavailable(
            "no PostgreSQL server on 127.0.0.1:5432 and no initdb in /usr/lib/postgresql: "
            f"run `sudo sh tests/system_deps.sh postgresql`, set {DSN_ENV}, "
            f"or opt out with {SKIP_ENV}=1"
        )
    # Two xdist workers may get here at once; dpkg allows one installer.
    with INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if find_bindir() is None:
            proc = subprocess.run(
                ["sh", str(SYSTEM_DEPS), "postgresql"],
                capture_output=True,
                check=False,
                timeout=900,
            )
            if proc.returncode != 0:
                tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise PgUnavailable(f"installing postgresql failed: {tail[0]}")
    bindir = find_bindir()
    if bindir is None:
        raise PgUnavailable("postgresql was installed but no initdb in /usr/lib/postgresql/*/bin")
    return bindir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_private_cluster(port: int | None = None) -> Server:
    """initdb a cluster in a new temporary directory and start it on a free loopback port."""
    bindir = ensure_binaries()
    run_as: str | None = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PgUnavailable(
                "running as root but there is no `postgres` user to run initdb as "
                "(Debian's postgresql package creates it)"
            ) from None
        run_as = "postgres"
    top = Path(tempfile.mkdtemp(prefix="watcher-test-pg-"))
    datadir = top / "data"
    port = port or free_port()
    if run_as is not None:
        os.chmod(top, 0o700)
        shutil.chown(top, user=run_as, group=run_as)
    server = Server(
        dsn=make_conninfo(
            host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=5
        ),
        origin=f"private cluster in {top}",
        datadir=datadir,
        run_as=run_as,
        bindir=bindir,
    )
    try:
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            run_as=run_as,
            timeout=180,
        )
        server.options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {top} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        server.start()
        deadline = time.monotonic() + 30
        while (reason := answers(server.dsn)) is not None:
            if time.monotonic() > deadline:
                raise PgUnavailable(f"the private cluster in {top} does not answer: {reason}")
            time.sleep(0.2)
    except subprocess.CalledProcessError as exc:
        server.stop()
        last = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise PgUnavailable(f"could not start a private PostgreSQL cluster: {last[0]}") from None
    except BaseException:
        server.stop()
        raise
    return server


def _run(argv: list[str], *, run_as: str | None, timeout: float) -> None:
    if run_as is not None:
        argv = ["runuser", "-u", run_as, "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, timeout=timeout, cwd="/")


@contextlib.contextmanager
def private_database(server: Server, label: str) -> Iterator[str]:
    """Create an empty database for one test session/worker; drop it afterwards."""
    name = f"watcher_test_{label}_{uuid.uuid4().hex[:8]}".lower()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"'.encode())
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise PgUnavailable(f"cannot create a test database on {server.origin}: {reason}") from None
    try:
        yield make_conninfo(server.dsn, dbname=name)
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@contextlib.contextmanager
def private_schema(dsn: str) -> Iterator[str]:
    """A fresh schema in ``dsn``'s database, first on the search path of the DSN returned."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}".encode())
    try:
        yield make_conninfo(dsn, options=f"-c search_path={name}")
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE".encode())
