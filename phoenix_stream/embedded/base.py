"""What the manager needs from each embedded service, and the shared start/verify steps."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from phoenix_stream.embedded.process import log_tail, pid_alive, pid_cmdline, wait_until
from phoenix_stream.embedded.state import ServiceRecord
from phoenix_stream.exceptions import ServiceError

__all__ = ["EmbeddedService", "fail", "owns_pid", "wait_ready"]

log = logging.getLogger(__name__)


class EmbeddedService(Protocol):
    """A server process on 127.0.0.1 with its data and log under one folder."""

    name: str

    @property
    def log_path(self) -> Path:
        """The service's log file."""
        ...

    def start(self, port: int) -> ServiceRecord:
        """Start on TCP ``port`` and return once clients can use it; ServiceError otherwise."""
        ...

    def stop(self, record: ServiceRecord) -> None:
        """Stop the process of ``record`` (no-op when it is not running)."""
        ...

    def alive(self, record: ServiceRecord) -> bool:
        """True when ``record``'s pid is alive and is this service's program."""
        ...


def fail(name: str, reason: str, log_path: Path, action: str = "start") -> ServiceError:
    """A ServiceError naming the service, the failed ``action``, the reason and its log's tail."""
    tail = log_tail(log_path)
    detail = (
        f"\n--- last lines of {log_path} ---\n{tail}" if tail else f" (log {log_path} is empty)"
    )
    return ServiceError(f"{name} could not {action}: {reason}{detail}")


def owns_pid(pid: int | None, program: str) -> bool:
    """True when ``pid`` is alive and runs the executable named ``program`` (guards pid reuse)."""
    if pid is None or not pid_alive(pid):
        return False
    argv = pid_cmdline(pid)
    if not argv:
        return True  # no procfs to check against: trust the pid
    # Redis rewrites its argv into a title like "redis-server 127.0.0.1:PORT".
    return Path(argv[0]).name.startswith(program)


def wait_ready(
    name: str,
    pid: int,
    ready: Callable[[], bool],
    timeout: float,
    log_path: Path,
) -> None:
    """Poll ``ready()`` for up to ``timeout`` seconds while ``pid`` lives, else ServiceError."""
    if wait_until(ready, timeout, abort=lambda: not pid_alive(pid)):
        return
    if not pid_alive(pid):
        raise fail(name, f"process {pid} exited during start", log_path)
    raise fail(name, f"not ready after {timeout:.0f} s (pid {pid} still running)", log_path)
