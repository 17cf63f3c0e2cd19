"""PostgreSQL: the pgserver wheel's binaries, one cluster in ``root/data``, TCP on 127.0.0.1.

PostgreSQL refuses to run as root. As pgserver does, a root caller runs initdb and the
server as the unprivileged system user ``pgserver`` (created with useradd when missing),
which owns ``root`` and can traverse the folders above it. Unlike pgserver, the server
listens on TCP 127.0.0.1 only (no Unix socket) so that every client uses one DSN.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import asyncpg  # type: ignore[import-untyped,unused-ignore]

from phoenix_stream.embedded.base import fail, owns_pid
from phoenix_stream.embedded.binaries import postgres_bin
from phoenix_stream.embedded.process import HOST, pid_alive, spawn_detached, stop_pid
from phoenix_stream.embedded.state import ServiceRecord
from phoenix_stream.exceptions import ServiceError

__all__ = ["DATABASE", "SUPERUSER", "SYSTEM_USER", "PostgresService"]

log = logging.getLogger(__name__)

DATABASE = "phoenix"
SUPERUSER = "postgres"
SYSTEM_USER = "pgserver"  # the same account pgserver itself creates when run as root

_TRAVERSE = stat.S_IXGRP | stat.S_IXOTH
_READ_EXEC = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """The passwd entry of ``name``, creating a no-login system user when it is missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise ServiceError(f"postgres: running as root needs user {name!r} and useradd is missing")
    done = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        # useradd fails with 9 when a concurrent starter created the user first, so the
        # passwd lookup, not the exit code, decides.
        raise ServiceError(f"postgres: useradd {name} failed: {done.stderr.strip()}") from None


def _ensure_traversable(path: Path) -> None:
    """Let other users traverse (not list) every folder above ``path``, as pgserver does."""
    for folder in path.resolve().parents:
        mode = folder.stat().st_mode
        if mode & _TRAVERSE != _TRAVERSE:
            folder.chmod(mode | _TRAVERSE)


def _ensure_readable_tree(path: Path) -> None:
    """Make the installation under ``path`` readable by other users when it is not yet."""
    if path.stat().st_mode & _READ_EXEC == _READ_EXEC:
        return
    for entry in [path, *path.rglob("*")]:
        mode = entry.stat().st_mode
        extra = _READ_EXEC if entry.is_dir() or mode & stat.S_IXUSR else stat.S_IRGRP | stat.S_IROTH
        entry.chmod(mode | extra)


async def _probe(dsn_base: str, pid: int, deadline: float) -> str | None:
    """Connect until ``deadline`` (monotonic s), create ``phoenix`` if missing; None on success."""
    last = "no connection attempt"
    while time.monotonic() < deadline and pid_alive(pid):
        try:
            conn = await asyncpg.connect(f"{dsn_base}/postgres", timeout=2.0)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            # "the database system is starting up" arrives as CannotConnectNowError.
            last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.05)
            continue
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{DATABASE}"')
            return None
        except asyncpg.PostgresError as exc:
            return f"creating database {DATABASE!r} failed: {exc}"
        finally:
            await conn.close()
    return last if pid_alive(pid) else "process exited during start"


class PostgresService:
    """PostgreSQL on ``127.0.0.1:port``, cluster in ``root/data``, log ``root/postgres.log``.

    Url ``postgresql://postgres@127.0.0.1:PORT/phoenix`` (trust auth, local only). Tuned
    for tests: fsync off, so data survives restarts and kills but not an OS crash.
    """

    name = "postgres"

    def __init__(
        self, root: Path, bin_dir: Path | None = None, *, ready_timeout: float = 60.0
    ) -> None:
        self.root = root
        self._bin_dir = bin_dir
        self.ready_timeout = ready_timeout
        self.data_dir = root / "data"
        self.log_path = root / "postgres.log"
        self.run_as = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def bin_dir(self) -> Path:
        """The folder with initdb, pg_ctl and postgres, found on first use (wheel, then PATH)."""
        if self._bin_dir is None:
            self._bin_dir = postgres_bin()
        return self._bin_dir

    def _prepare(self) -> None:
        """Create ``root`` and the log, owned by the user that runs the server."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path.touch(exist_ok=True)
        if self.run_as is None:
            return
        entry = _ensure_system_user(self.run_as)
        _ensure_traversable(self.root)
        _ensure_traversable(self.bin_dir)
        _ensure_readable_tree(self.bin_dir.parent)
        for path in (self.root, self.log_path):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        if self.data_dir.exists():
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _run(self, argv: list[str], what: str, timeout: float, action: str = "start") -> None:
        """Run a PostgreSQL tool as the server user, output to the log; ServiceError on failure."""
        with self.log_path.open("ab") as log_file:
            try:
                done = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    user=self.run_as,
                    cwd=self.root,
                    timeout=timeout,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise fail(self.name, f"{what}: {exc}", self.log_path, action) from exc
        if done.returncode != 0:
            raise fail(self.name, f"{what} exited with {done.returncode}", self.log_path, action)

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise fail(self.name, f"{self.data_dir} is neither empty nor a cluster", self.log_path)
        argv = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            # C locale: initdb fails when the environment's locale is not installed.
            "--locale=C",
            # Skipping the final fsync saves seconds on a first start.
            "--no-sync",
        ]
        self._run(argv, "initdb", timeout=120.0)

    def start(self, port: int) -> ServiceRecord:
        """Initialise the cluster if needed, serve on ``port``, create database ``phoenix``."""
        try:
            self._prepare()
        except OSError as exc:
            raise fail(self.name, f"preparing {self.root}: {exc}", self.log_path) from exc
        self._initdb()
        argv = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            f"port={port}",
            # TCP only: a socket path under a deep state dir can exceed the 107-byte limit.
            "-c",
            "unix_socket_directories=",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
        ]
        pid = spawn_detached(argv, self.log_path, cwd=self.root, user=self.run_as)
        dsn_base = f"postgresql://{SUPERUSER}@{HOST}:{port}"
        try:
            deadline = time.monotonic() + self.ready_timeout
            # asyncpg needs an event loop; a worker thread gets its own, leaving any loop
            # of the caller (pytest-asyncio's session loop) untouched.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                error = pool.submit(asyncio.run, _probe(dsn_base, pid, deadline)).result()
            if error is not None:
                raise fail(self.name, error, self.log_path)
        except BaseException:
            self._stop_pid(pid)
            raise
        return ServiceRecord(
            name=self.name,
            url=f"{dsn_base}/{DATABASE}",
            port=port,
            pid=pid,
            log=str(self.log_path),
        )

    def _stop_pid(self, pid: int) -> None:
        if not pid_alive(pid):
            stop_pid(pid, self.name)  # reaps our child if it already exited
            return
        argv = [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"]
        argv += ["-t", "30"]
        try:
            self._run(argv, "pg_ctl stop", timeout=40.0, action="stop")
        except ServiceError as exc:
            log.warning("postgres: pg_ctl stop failed, stopping pid %d by signal: %s", pid, exc)
        # SIGINT is PostgreSQL's "fast" shutdown (SIGTERM would wait for clients to leave);
        # it only matters when pg_ctl failed, else the process is already gone.
        stop_pid(pid, self.name, sig=signal.SIGINT)

    def stop(self, record: ServiceRecord) -> None:
        """``pg_ctl stop -m fast`` (then signals if that fails); the data dir is kept."""
        if record.pid is not None and self.alive(record):
            self._stop_pid(record.pid)

    def alive(self, record: ServiceRecord) -> bool:
        """True when ``record.pid`` is a running postgres postmaster."""
        return owns_pid(record.pid, "postgres")
