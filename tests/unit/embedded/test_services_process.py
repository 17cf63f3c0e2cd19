"""Free ports, detached spawn, liveness and stop by pid, on small real processes."""

from __future__ import annotations

import itertools
import socket
import sys
from pathlib import Path

import pytest

from phoenix_stream.embedded import process
from phoenix_stream.embedded.process import (
    free_port,
    log_tail,
    pid_alive,
    pid_cmdline,
    port_accepts,
    port_is_free,
    spawn_detached,
    stop_pid,
    wait_until,
)
from phoenix_stream.exceptions import ServiceError

# A process that ignores SIGTERM, to exercise the SIGKILL fallback.
STUBBORN = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def test_free_port_is_bindable_and_then_taken_while_listening() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert port_is_free(port)
    assert not port_accepts(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert not port_is_free(port)
        assert port_accepts(port)


def test_spawned_process_is_alive_until_stopped(tmp_path: Path) -> None:
    log = tmp_path / "sleep.log"
    pid = spawn_detached(["sleep", "60"], log)
    assert pid_alive(pid)
    # Popen returns inside execve, before the new argv is visible in procfs.
    assert wait_until(lambda: pid_cmdline(pid) == ["sleep", "60"], timeout=10)
    stop_pid(pid, "sleep", timeout=5)
    assert not pid_alive(pid)


def test_exited_child_is_not_alive(tmp_path: Path) -> None:
    pid = spawn_detached([sys.executable, "-c", "print('bye')"], tmp_path / "bye.log")
    assert wait_until(lambda: not pid_alive(pid), timeout=10)
    assert log_tail(tmp_path / "bye.log") == "bye"
    stop_pid(pid, "bye")  # a dead pid is a no-op


def test_stop_falls_back_to_sigkill(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    pid = spawn_detached([sys.executable, "-c", STUBBORN], log)
    assert wait_until(lambda: "ready" in log_tail(log), timeout=10)
    stop_pid(pid, "stubborn", timeout=0.3)
    assert not pid_alive(pid)


def test_unknown_pids_are_not_alive() -> None:
    assert not pid_alive(None)
    assert not pid_alive(0)
    assert not pid_alive(2**22 + 1)  # above Linux's pid_max


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(log, lines=2) == "line 98\nline 99"
    assert log_tail(tmp_path / "missing.log") == ""


def test_wait_until_stops_on_abort_and_on_timeout() -> None:
    calls: list[int] = []

    def never() -> bool:
        calls.append(1)
        return False

    assert not wait_until(never, timeout=60, interval=0.01, abort=lambda: len(calls) >= 3)
    assert len(calls) == 3
    assert not wait_until(never, timeout=0.05, interval=0.01)
    assert wait_until(lambda: True, timeout=0)


def test_a_port_range_hands_out_its_free_ports_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        window = range(taken, min(taken + 50, 65536))
        monkeypatch.setattr(process, "port_range", window)
        picked = [free_port() for _ in range(6)]
    assert set(picked) <= set(window) - {taken}  # never the one that listens
    assert all(a != b for a, b in itertools.pairwise(picked))  # in turn


def test_a_full_port_range_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        monkeypatch.setattr(process, "port_range", range(taken, taken + 1))
        with pytest.raises(ServiceError, match="no free TCP port"):
            free_port()
