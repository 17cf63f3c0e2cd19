"""Process plumbing for the embedded services: free ports, detached spawn, stop by pid.

Every service is a child started in its own session, so the command that started it can
exit and leave it running; it is found again through its pid, never through its name.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from phoenix_stream.exceptions import ServiceError

__all__ = [
    "free_port",
    "log_tail",
    "pid_alive",
    "pid_cmdline",
    "port_accepts",
    "port_is_free",
    "spawn_detached",
    "stop_pid",
    "wait_until",
]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"

# Popen handles of the services this interpreter spawned. Keeping them alive avoids
# Popen.__del__'s "subprocess is still running" ResourceWarning (an error under
# pytest's filterwarnings=error) and lets stop_pid reap the child, so that a stopped
# child does not linger as a zombie that still looks alive to os.kill(pid, 0).
_children: dict[int, subprocess.Popen[bytes]] = {}


# Ports to pick from instead of the OS's choice (None). A port is picked, released and
# bound later by a child; two test processes side by side can be handed the same port
# in between (seen: a worker's URL answered by the other process's worker), so the test
# suite gives each of its processes a range of its own (tests/conftest.py).
port_range: range | None = None
_offsets = itertools.count(random.randrange(6000))


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The OS picks it, unless ``port_range`` is set: then the next free one of the range,
    going round it, so this process hands no port out twice while it has others.
    """
    if port_range is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
            return port
    for _ in range(len(port_range)):
        candidate = port_range[next(_offsets) % len(port_range)]
        if port_is_free(candidate, host):
            return candidate
    raise ServiceError(f"no free TCP port on {host} in {port_range}")


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when ``port`` on ``host`` can be bound now (SO_REUSEADDR, as servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers bind with SO_REUSEADDR, so a port in TIME_WAIT after a stop is reusable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def spawn_detached(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start ``argv`` in a new session, stdout and stderr appended to ``log_path``; return its pid.

    ``user`` runs it as that system user (needs root), e.g. PostgreSQL, which refuses root.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                # Own session: no terminal signals from the caller (Ctrl-C in pytest or the
                # CLI) reach the service, and it survives the caller's exit.
                start_new_session=True,
                close_fds=True,
                user=user,
            )
        except OSError as exc:
            raise ServiceError(f"cannot execute {argv[0]}: {exc}") from exc
    _children[proc.pid] = proc
    return proc.pid


def _reap(pid: int) -> None:
    """Collect the exit status of our own child ``pid`` (no-op for strangers)."""
    proc = _children.get(pid)
    if proc is not None and proc.poll() is not None:
        del _children[pid]


def pid_alive(pid: int | None) -> bool:
    """True when process ``pid`` exists and is not a zombie."""
    if pid is None or pid <= 0:
        return False
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user (postgres runs unprivileged)
    # A zombie (exited, not yet reaped by its parent) still answers kill(pid, 0).
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(pid, 0)
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def pid_cmdline(pid: int) -> list[str]:
    """The argv of process ``pid`` from procfs; empty when unknown or not on Linux."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.05,
    *,
    abort: Callable[[], bool] | None = None,
) -> bool:
    """Poll ``predicate`` every ``interval`` seconds for up to ``timeout`` seconds.

    Returns True as soon as it holds, False on timeout or as soon as ``abort()`` is True
    (e.g. the process being waited for has died).
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if abort is not None and abort():
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stop_pid(
    pid: int, name: str, timeout: float = 10.0, sig: signal.Signals = signal.SIGTERM
) -> None:
    """Stop process ``pid``: ``sig`` (SIGTERM), wait up to ``timeout`` seconds, then SIGKILL.

    Raises ServiceError (naming ``name``) only if the process survives SIGKILL.
    """
    if not pid_alive(pid):
        _reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if wait_until(lambda: not pid_alive(pid), timeout):
        _reap(pid)
        return
    log.warning("%s (pid %d) ignored %s for %.1f s; sending SIGKILL", name, pid, sig.name, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_until(lambda: not pid_alive(pid), 5.0):
        raise ServiceError(f"{name}: pid {pid} is still alive after SIGKILL")
    _reap(pid)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of the log file ``path`` (empty when there is none)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16_384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
