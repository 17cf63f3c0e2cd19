"""A phoenix-stream worker in a child process, for the demo, the benchmark and tests."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import aiohttp

from phoenix_stream.embedded.process import free_port as free_port  # re-exported
from phoenix_stream.exceptions import ServiceError
from phoenix_stream.settings import ENV, Settings


@functools.cache
def run_control_key() -> str:
    """A control key made once per run of this process (never stored): the demo, the
    benchmark and the tests start workers that must share one, and no key lives in the repo."""
    return secrets.token_hex(32)


def with_control_key(settings: Settings) -> Settings:
    """``settings`` as given when they name a control key, else with this run's key."""
    if settings.control_key:
        return settings
    return settings.with_overrides(control_key=run_control_key())


def settings_env(settings: Settings) -> dict[str, str]:
    """``PHOENIX_*`` variables that reproduce ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name, variable in ENV.items():
        if name == "kafka_password" and settings.kafka_password_file:
            continue  # the child reads it from the file, as this process did
        value = getattr(settings, name)
        env[variable] = ",".join(value) if isinstance(value, tuple) else str(value)
    return env


class WorkerProcess:
    """``phoenix-stream worker`` started with given settings; stopped by its pid."""

    def __init__(
        self, settings: Settings, log_path: Path, extra_env: Mapping[str, str] | None = None
    ) -> None:
        self.settings = with_control_key(settings)
        self.log_path = log_path
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The worker's HTTP address."""
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def start(self) -> None:
        """Spawn the worker (returns at once; see ``wait_ready``)."""
        env = {**os.environ, **settings_env(self.settings), **self.extra_env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "phoenix_stream",
                "worker",
                "--web-port",
                str(self.settings.web_port),
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Wait until ``GET /ready`` answers 200 and the agents have partitions; seconds."""
        started = time.monotonic()
        last = "no answer"
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - started < timeout_s:
                if self.process is None or self.process.poll() is not None:
                    raise ServiceError(
                        f"worker exited early; see {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    async with session.get(
                        f"{self.base_url}/ready", timeout=aiohttp.ClientTimeout(total=2)
                    ) as resp:
                        if resp.status == 200 and self._assigned():
                            return time.monotonic() - started
                        last = await resp.text()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    last = repr(exc)
                await asyncio.sleep(0.1)
        raise ServiceError(
            f"worker not ready after {timeout_s} s ({last}); "
            f"see {self.log_path}:\n{self.log_tail()}"
        )

    def _assigned(self) -> bool:
        # The worker logs its partition assignment once it has joined the group.
        try:
            return (
                b"[^---Recovery]: Resuming flow" in self.log_path.read_bytes()
                or b"Worker ready" in self.log_path.read_bytes()
            )
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the worker's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM the worker (its pid only), SIGKILL after ``timeout_s``; exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self._close_log()
        return process.returncode

    def kill(self, timeout_s: float = 10.0) -> int | None:
        """SIGKILL the worker (its pid only), as a crash would: no revoke, no commit; exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout_s)
        self._close_log()
        return process.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
