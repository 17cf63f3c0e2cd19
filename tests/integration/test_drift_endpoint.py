"""``GET /v1/drift/{model}`` and ``phoenix-stream drift`` on a real worker.

Reports are written with ``DriftStore`` into the worker's database (no drift agent
involved), then read through the endpoint and the CLI; a worker whose PostgreSQL is
down answers 503.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from phoenix_stream.drift.report import DriftReport, FeatureDrift
from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.settings import Settings
from phoenix_stream.storage.drift import DriftStore
from phoenix_stream.storage.sink import PredictionSink
from phoenix_stream.testing import POLL_S
from phoenix_stream.tools.worker_process import WorkerProcess, free_port

MODEL = "credit-risk"
START = 1_600_000_000.0 + 3600 * (uuid.uuid4().int % 10_000)  # apart from other runs' rows
RULE = {
    "alpha": 0.05,
    "correction": "bonferroni",
    "effect_floor": 0.1,
    "min_window": 200,
    "persistence": 2,
    "bins": 50,
}


def report(window: int) -> DriftReport:
    """The ``window``-th minute after START; drift from the second, alarm at the third."""
    start = START + 60.0 * window
    return DriftReport(
        model=MODEL,
        version=f"e2e-{int(START)}",
        window_start=start,
        window_end=start + 60.0,
        n=1000 + window,
        features={
            "age": FeatureDrift(0.2, 1e-9, 0.2, window > 0),
            "__score__": FeatureDrift(0.01, 0.9, 0.01, False),
        },
        verdict="drift" if window > 0 else "no_drift",
        consecutive=window,
        alarm=window == 2,
        trigger_id=f"{MODEL}:x:{window}" if window == 2 else None,
        rule=RULE,
    )


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def cli(base_url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "phoenix_stream",
        "drift",
        *args,
        env={**os.environ, "PHOENIX_ADMIN_URL": base_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture(scope="module")
async def stored(services: ServiceAddresses) -> list[DriftReport]:
    """Three windows of one version, in the database the workers use."""
    reports = [report(i) for i in range(3)]
    sink = PredictionSink(services.postgres_dsn)
    await sink.start()
    try:
        await DriftStore(sink.database).record(reports)
    finally:
        await sink.stop()
    return reports


async def test_the_latest_windows_newest_first(
    worker_factory: Any, stored: list[DriftReport]
) -> None:
    worker = await worker_factory.start()
    url = f"{worker.base_url}/v1/drift/{MODEL}"
    # Other tests' workers report on the same model in this database, newer than these.
    status, body = await get(f"{url}?limit=1000")
    assert status == 200, body
    mine = [r for r in body["reports"] if r["version"] == stored[0].version]
    assert [r["window_start"] for r in mine] == [r.window_start for r in reversed(stored)]
    assert mine[0]["alarm"] and mine[0]["features"]["age"]["drifted"] is True
    # A worker of the default agents reads reports others wrote, and says so.
    assert "does not run the drift agents (PHOENIX_AGENTS)" in body["warning"]
    status, body = await get(f"{url}?limit=1")
    assert (status, len(body["reports"])) == (200, 1)
    status, body = await get(f"{url}?limit=zero")
    assert (status, body["field"]) == (422, "limit")
    status, body = await get(f"{worker.base_url}/v1/drift/nobody")
    assert (status, body["field"]) == (404, "model")

    code, out, err = await cli(worker.base_url, MODEL, "--limit", "1000")
    assert code == 0, err
    assert "does not run the drift agents" in err
    lines = out.splitlines()
    assert lines[0].startswith(f"{MODEL}: ") and lines[0].endswith("drift windows, newest first")
    windows = [line.split() for line in lines if stored[0].version in line]
    assert [(w[-4], w[-3], w[-2], w[-1]) for w in windows] == [
        ("1002", "drift", "ALARM", "2"),
        ("1001", "drift", "-", "1"),
        ("1000", "no_drift", "-", "0"),
    ]
    code, out, err = await cli(worker.base_url, "nobody")
    assert (code, err.splitlines()[-1]) == (1, "error: 404: no model 'nobody' (model)")


async def test_postgresql_down_is_a_json_503(
    services: ServiceAddresses, models_dir: Path, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_url=services.kafka_url,
        redis_url=services.redis_url,
        # Nothing listens on a port that was free a moment ago.
        postgres_dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
        models_dir=models_dir,
        state_dir=tmp_path,
        app_id=f"test-{tag}",
        topic_prefix=f"t{tag}.",
        topic_partitions=2,
        web_port=free_port(),
    )
    # Not worker_factory: its workers must be ready, and without PostgreSQL none is.
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        deadline = time.monotonic() + 90.0
        while True:
            assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
            try:
                status, body = await get(f"{worker.base_url}/v1/drift/{MODEL}")
            except aiohttp.ClientError:
                status, body = 0, None  # the web server is not up yet
            if status not in (0, 404):  # 404 until the models are loaded
                break
            assert time.monotonic() < deadline, worker.log_tail()
            await asyncio.sleep(POLL_S)
        assert (status, body["kind"]) == (503, "database"), body
        assert "PostgreSQL" in body["error"]
    finally:
        worker.stop()
