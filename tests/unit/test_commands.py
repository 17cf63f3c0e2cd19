"""Our CLI commands print their own output only: no Faust Worker or service lifecycle lines."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from phoenix_stream.commands import until_sigterm
from phoenix_stream.tools.worker_process import free_port


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phoenix_stream", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def test_services_status_prints_its_table_and_nothing_else(tmp_path: Path) -> None:
    done = run_cli("services", "status", PHOENIX_STATE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["broker", "stopped"],
        ["redis", "stopped"],
        ["postgres", "stopped"],
    ]
    assert "[^" not in done.stdout + done.stderr  # no [^Worker]: Starting... and the like
    assert done.stderr == ""


def test_a_failing_command_says_why_and_exits_1(tmp_path: Path) -> None:
    # Nothing listens on a port that was free a moment ago: seeding must fail.
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    done = run_cli(
        "seed", "--entities", "3", PHOENIX_STATE_DIR=str(tmp_path), PHOENIX_REDIS_URL=redis_url
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith(f"error: MSET of 3 keys to {redis_url}")
    assert "[^" not in done.stdout + done.stderr  # the FeatureStore's start/stop lines too
    assert "Traceback" not in done.stderr


async def test_sigterm_cancels_a_command_and_lets_it_unwind() -> None:
    # What stops a scenario's workers and embedded services when it is terminated.
    unwound: list[str] = []
    running = asyncio.Event()

    async def command() -> None:
        try:
            running.set()
            await asyncio.Event().wait()  # until cancelled
        finally:
            unwound.append("stopped its children")

    task = asyncio.create_task(until_sigterm(command()))
    await running.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert unwound == ["stopped its children"]
    # The handler is gone with the command: the next SIGTERM is not swallowed by it.
    assert not asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
