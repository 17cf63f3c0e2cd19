"""No silent stall: two workers with every agent, on a CPU kept busy, answer every request.

The gradual drift scenario once lost half its requests: both workers stopped consuming
minutes in, with nothing in their logs until Faust's own check five minutes later. Here
a busy loop competes with the workers for the two cores while requests and their true
labels stream in (single-request records: the per-event path); every request must be
predicted and stored once, no agent may have stalled (``phoenix_stream_stalls_total``),
and both workers must be ready at the end.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.settings import AGENTS, Settings
from phoenix_stream.testing import consume_json, covers, prediction_rows
from phoenix_stream.tools.worker_process import WorkerProcess

REQUESTS = 9000
RATE = 300.0  # requests/s: about what the two workers manage with a core taken
FEEDBACK_DELAY_S = 1.0
# Bounds only for a failing run on a loaded machine; the waits return once met.
STORED_TIMEOUT_S = 150.0
HOG_LIMIT_S = 300  # the busy loop ends by itself even if this process dies


def busy_loop() -> subprocess.Popen[bytes]:
    """A process spinning one core, bounded in time (``timeout``), stopped by its pid."""
    return subprocess.Popen(
        ["timeout", str(HOG_LIMIT_S), sys.executable, "-c", "while True: pass"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def stream_requests(producer: AIOKafkaProducer, settings: Settings, run: str) -> list[str]:
    """``REQUESTS`` single-request records at ``RATE``, each labelled after a delay."""
    ids: list[str] = []
    labels: list[tuple[float, list[str]]] = []
    started = time.monotonic()
    while len(ids) < REQUESTS or labels:
        due = min(REQUESTS, int((time.monotonic() - started) * RATE)) - len(ids)
        batch: list[str] = []
        for _ in range(max(0, due)):
            i = len(ids)
            request_id = f"{run}-{i}"
            body = {
                "request_id": request_id,
                "entity_id": f"c{i % 2000:06d}",
                "features": {"credit_amount": 8.0 + i % 7, "interest_rate": 6.9},
                "sent_at": time.time(),
            }
            entity = str(body["entity_id"]).encode()
            await producer.send(settings.topic("requests"), orjson.dumps(body), key=entity)
            ids.append(request_id)
            batch.append(request_id)
        if batch:
            labels.append((time.monotonic() + FEEDBACK_DELAY_S, batch))
        while labels and labels[0][0] <= time.monotonic():
            for request_id in labels.pop(0)[1]:
                label = {"request_id": request_id, "label": int(request_id[-1]) % 2}
                await producer.send(
                    settings.topic("feedback"), orjson.dumps(label), key=request_id.encode()
                )
        await asyncio.sleep(0.05)
    await producer.flush()
    return ids


async def stalls_and_readiness(worker: WorkerProcess) -> tuple[float, int, Any]:
    """The worker's stall count (all agents), and its ``/ready`` status and body."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(f"{worker.base_url}/metrics") as response:
            text = await response.text()
        async with session.get(f"{worker.base_url}/ready") as response:
            status, body = response.status, await response.json()
    stalls = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("phoenix_stream_stalls_total{")
    )
    return stalls, status, body


async def test_two_workers_with_every_agent_on_a_busy_cpu_answer_every_request(
    worker_factory: Any, producer: AIOKafkaProducer, services: ServiceAddresses
) -> None:
    overrides: dict[str, object] = {
        "agents": AGENTS,
        "drift_window_s": 2.0,
        "drift_min_window": 50,
        "stall_exit_s": 0.0,  # a stall must show in the assertions, not as a restart
    }
    first: WorkerProcess = await worker_factory.start(**overrides)
    settings = first.settings
    second: WorkerProcess = await worker_factory.start(
        app_id=settings.app_id, topic_prefix=settings.topic_prefix, **overrides
    )
    workers = [first, second]
    run = uuid.uuid4().hex[:8]
    hog = busy_loop()
    try:
        ids = await stream_requests(producer, settings, run)
        rows = await prediction_rows(
            services.postgres_dsn,
            f"{run}-",
            until=lambda rows: len(rows) >= len(ids),
            timeout_s=STORED_TIMEOUT_S,
        )
    finally:
        hog.terminate()
        hog.wait(10)
    logs = ", ".join(str(w.log_path) for w in workers)
    stored = [str(row["request_id"]) for row in rows]
    missing = sorted(set(ids) - set(stored), key=lambda rid: int(rid.split("-")[1]))
    assert not missing, f"{len(missing)} of {len(ids)} not stored, e.g. {missing[:10]}; {logs}"
    assert len(stored) == len(set(stored)) == len(ids)
    predictions = await consume_json(
        settings.kafka_url, settings.topic("predictions"), until=covers(ids), timeout_s=60
    )
    assert set(ids) <= {str(p["request_id"]) for p in predictions}
    for worker in workers:
        stalls, status, body = await stalls_and_readiness(worker)
        assert worker.process is not None and worker.process.poll() is None, logs
        assert stalls == 0, f"{worker.base_url} stalled {stalls:.0f} times; {logs}"
        assert status == 200, f"{worker.base_url} not ready: {body}; {logs}"
