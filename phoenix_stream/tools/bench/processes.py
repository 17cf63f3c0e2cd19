"""Helper processes of the benchmark (baseline loop, Faust floor, HTTP baseline).

Each runs in its own session with its output in a log file, and is stopped by its pid
only: SIGTERM, then SIGKILL after a timeout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import aiohttp

from phoenix_stream.exceptions import ServiceError

__all__ = ["ChildProcess", "faust_command", "python_module_command"]


def python_module_command(module: str, *args: str) -> list[str]:
    """``python -m module args...`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def faust_command(*args: str) -> list[str]:
    """The ``faust`` console script of this environment (``python -m faust`` if absent)."""
    script = Path(sys.executable).with_name("faust")
    if script.is_file():
        return [str(script), *args]
    return python_module_command("faust", *args)


class ChildProcess:
    """A command run in the background with its output in ``log_path``; stopped by pid."""

    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Spawn the process (returns at once)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the process's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_http_ready(self, url: str, timeout_s: float = 60.0) -> float:
        """Wait until ``GET url`` answers 200; seconds waited. ServiceError on exit/timeout."""
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - started < timeout_s:
                if not self.alive():
                    raise ServiceError(
                        f"{self.name} exited early; log {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return time.monotonic() - started
                except (aiohttp.ClientError, TimeoutError):
                    pass  # not listening yet
                await asyncio.sleep(0.1)
        raise ServiceError(
            f"{self.name} not ready after {timeout_s} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM the process (its pid only), SIGKILL after ``timeout_s``; exit code."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return None if process is None else process.returncode
