"""A Prometheus server on 127.0.0.1 that scrapes given workers, and its HTTP API.

Used by the observability test: Debian's ``prometheus`` (``apt-get install prometheus``;
``.ci/run`` installs it when missing) with a generated config that loads the given alert
rule files, scrapes the workers and evaluates the rules every second, its data in a
temporary folder. Stopped by its pid.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from phoenix_stream.embedded.process import (
    HOST,
    free_port,
    log_tail,
    pid_alive,
    spawn_detached,
    stop_pid,
)

JOB = "phoenix-stream"  # the job name the alert rules and dashboards select


class PrometheusError(RuntimeError):
    """Prometheus is missing, did not start, or its API answered an error."""


@dataclass(frozen=True, slots=True)
class Series:
    """One series of an instant query's answer."""

    labels: dict[str, str]
    value: float


def prometheus_binary() -> str:
    """The path of ``prometheus``; PrometheusError saying how to install it when missing."""
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusError(
            "prometheus is not installed: apt-get install prometheus (.ci/run does this)"
        )
    return found


def scrape_config(targets: Sequence[str], rule_files: Sequence[Path]) -> dict[str, Any]:
    """The config: ``targets`` (host:port) as job ``phoenix-stream``, every second."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": JOB,
                "scrape_timeout": "1s",
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }


class PrometheusServer:
    """``prometheus`` on a free port of 127.0.0.1 under ``work_dir``; ``start``, then ``stop``."""

    def __init__(self, work_dir: Path, targets: Sequence[str], rule_files: Sequence[Path]) -> None:
        self.work_dir = work_dir
        self.config = scrape_config(targets, rule_files)
        self.port = 0
        self.pid: int | None = None
        self.log_path = work_dir / "prometheus.log"

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://{HOST}:{self.port}"

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start it and return once ``/-/ready`` answers 200."""
        binary = prometheus_binary()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.work_dir / "prometheus.yml"
        config_path.write_text(json.dumps(self.config, indent=2))  # JSON is YAML
        self.port = free_port()
        self.pid = spawn_detached(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.work_dir / 'data'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--web.enable-lifecycle",
            ],
            self.log_path,
        )
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while True:
                if not pid_alive(self.pid):
                    raise PrometheusError(f"prometheus exited:\n{log_tail(self.log_path)}")
                try:
                    async with session.get(f"{self.url}/-/ready") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise PrometheusError(
                        f"prometheus not ready in {timeout_s:.0f} s:\n{log_tail(self.log_path)}"
                    )
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        """Stop it by its pid (SIGTERM, then SIGKILL)."""
        if self.pid is not None:
            stop_pid(self.pid, "prometheus")
            self.pid = None

    async def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``'s ``data``; PrometheusError for an error answer."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.get(f"{self.url}/api/v1/{path}", params=params) as response,
        ):
            body = await response.json(content_type=None)
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[Series]:
        """The series an instant query of ``expr`` returns now (a scalar as one series)."""
        data = await self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [Series({}, float(data["result"][1]))]
        return [Series(item["metric"], float(item["value"][1])) for item in data["result"]]

    async def alerts(self) -> list[dict[str, Any]]:
        """The alerts pending or firing now."""
        data = await self.api("alerts")
        alerts: list[dict[str, Any]] = data["alerts"]
        return alerts

    async def targets_up(self) -> dict[str, str]:
        """Scrape URL -> health (up, down, unknown) of every active target."""
        data = await self.api("targets")
        return {t["scrapeUrl"]: t["health"] for t in data["activeTargets"]}
