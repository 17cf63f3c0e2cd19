"""Credentials in the service URLs never reach a worker's log, /ready or the CLI's output.

A Redis of its own with ``requirepass`` (the worker must use the password to work), and
a PostgreSQL DSN with ``?password=`` on a port where nothing listens: the sink then logs
its failed connects again and again, and /ready names PostgreSQL, the places where the
password was printed before (4 times in the first seconds).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.embedded.redis_server import RedisService
from phoenix_stream.settings import ENV, Settings
from phoenix_stream.tools.worker_process import WorkerProcess, free_port

REDIS_SECRET = "redis-Secret-4711"
PG_SECRET = "pg-Secret-0815"


@pytest.fixture(scope="module")
async def protected_redis(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A Redis that refuses every command without the password; its URL with it."""
    service = RedisService(tmp_path_factory.mktemp("redis-auth"))
    record = service.start(free_port())
    try:
        client = Redis(host="127.0.0.1", port=record.port)
        await client.config_set("requirepass", REDIS_SECRET)
        await client.aclose()
        yield f"redis://:{REDIS_SECRET}@127.0.0.1:{record.port}/0"
    finally:
        service.stop(record)


async def _ready_answer(base_url: str, timeout_s: float) -> tuple[int, str]:
    """The first /ready answer that names PostgreSQL as failing (status, body)."""
    deadline = time.monotonic() + timeout_s
    last = (0, "no answer")
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{base_url}/ready") as resp:
                    last = (resp.status, await resp.text())
                    if '"postgres"' in last[1]:
                        return last
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"/ready never named postgres: {last}")


async def test_worker_log_and_ready_never_show_the_passwords(
    services: ServiceAddresses, models_dir: Path, protected_redis: str, tmp_path: Path
) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/phoenix?password={PG_SECRET}"
    settings = Settings(
        kafka_url=services.kafka_url,
        redis_url=protected_redis,
        postgres_dsn=dsn,
        models_dir=models_dir,
        state_dir=tmp_path,
        app_id=f"secrets-{os.getpid()}",
        topic_prefix=f"secrets{os.getpid()}.",
        topic_partitions=1,
        web_port=free_port(),
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        status, body = await _ready_answer(worker.base_url, 90.0)
        # Several failed connects logged (each used to print the DSN whole).
        deadline = time.monotonic() + 60
        while b"PostgreSQL still not ready (attempt 3)" not in worker.log_path.read_bytes():
            assert time.monotonic() < deadline, worker.log_tail()
            await asyncio.sleep(0.2)
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert status == 503
    assert '"redis"' not in body  # the password reached Redis: it answers
    for secret in (PG_SECRET, REDIS_SECRET):
        assert secret not in body
        assert secret not in log
    assert "password=***" in log


def test_cli_output_never_shows_the_redis_password(protected_redis: str) -> None:
    env = {**os.environ, ENV["redis_url"]: protected_redis}
    done = subprocess.run(
        [sys.executable, "-m", "phoenix_stream", "seed", "--entities", "10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "seeded 10 entities into redis://:***@" in done.stdout
    assert REDIS_SECRET not in done.stdout + done.stderr
