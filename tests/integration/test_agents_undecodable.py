"""Every agent, fed bytes it cannot decode, dead-letters them and handles what follows.

One worker runs every agent. On each consumed topic, undecodable bytes go first, on the
partition that the good records after them use; each agent must dead-letter its bad
record (with the topic it came from) and then handle the good ones: requests predicted,
predictions stored, feedback stored, a deployment recorded, drift counts closed into a
report, a retrain request run. An input that raises inside an agent's work is shown for
the inference agent in test_hostile_records.py and for the sink in
test_sink_isolation.py; the isolation itself, shared by every agent through
streaming/batches.run_batches, in tests/unit/streaming/test_failure_policy.py.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.settings import AGENTS
from phoenix_stream.testing import consume_json, covers, metric_reaches, prediction_rows
from phoenix_stream.tools.worker_process import WorkerProcess

TOKEN = "undecodable-token"
MODEL = "credit-risk"
GARBAGE = b"\xff\x00 not json {"
LOAN = {"credit_amount": 8.0, "duration_months": 36.0, "interest_rate": 6.9}
TIMEOUT_S = 90.0


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = TIMEOUT_S) -> bool:
    """Poll ``check`` until it holds or the timeout; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def admin(method: str, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.request(
            method,
            url,
            data=orjson.dumps(body),
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response,
    ):
        return response.status, orjson.loads(await response.read())


async def count_rows(dsn: str, query: str, *args: Any) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(query, *args))
    finally:
        await connection.close()


@pytest.mark.brokers("tansu", "kafka")
async def test_every_agent_dead_letters_undecodable_bytes_and_goes_on(
    worker_factory: Any, producer: AIOKafkaProducer, services: ServiceAddresses
) -> None:
    worker: WorkerProcess = await worker_factory.start(
        agents=AGENTS,
        admin_token=TOKEN,
        challenger_version="",
        drift_window_s=1.0,
        drift_min_window=1,
        # The retraining asked for below must find too little data whatever other
        # modules labelled earlier in the session's shared database (it learns from the
        # last retrain_window_s): 5 s hold this test's one label, not another's thousands.
        retrain_window_s=5.0,
    )
    settings = worker.settings
    run = uuid.uuid4().hex[:8]
    ids = [f"{run}-{i}" for i in range(40)]
    started = datetime.now(UTC)
    # Topic (without prefix) -> the key its good records use: the bad one shares their
    # partition.
    keys = {
        "requests": b"c000007",
        "predictions": b"c000007",  # predictions are keyed by entity id
        "feedback": ids[0].encode(),
        "deployments": MODEL.encode(),
        "drift-counts": f"{MODEL}/1".encode(),
        "retrain": MODEL.encode(),
    }

    # 1. The bad record first on every consumed topic; on drift-counts also counts that
    #    decode but have another shape than the version's bins (they would break the
    #    window for the good counts after them).
    for topic, key in keys.items():
        await producer.send_and_wait(settings.topic(topic), GARBAGE, key=key)
    misshapen = {"model": MODEL, "version": "1", "counts": [[1, 2], [3, 4]], "n": 2,
                 "at": time.time()}  # fmt: skip
    await producer.send_and_wait(
        settings.topic("drift-counts"), orjson.dumps(misshapen), key=keys["drift-counts"]
    )

    # 2. Good records after them.
    for request_id in ids:
        request = {"request_id": request_id, "entity_id": "c000007", "features": LOAN}
        await producer.send_and_wait(
            settings.topic("requests"), orjson.dumps(request), key=keys["requests"]
        )
    rows = await prediction_rows(
        services.postgres_dsn, f"{run}-", until=lambda r: len(r) >= len(ids), timeout_s=TIMEOUT_S
    )
    assert {r["request_id"] for r in rows} == set(ids)  # inference and sink went on
    feedback = {"request_id": ids[0], "label": 1}
    await producer.send_and_wait(
        settings.topic("feedback"), orjson.dumps(feedback), key=keys["feedback"]
    )
    status, _ = await admin(
        "PUT",
        f"{worker.base_url}/v1/deployments/{MODEL}",
        {"champion": "1", "reason": f"after garbage {run}"},
    )
    assert status == 200
    status, _ = await admin(
        "POST", f"{worker.base_url}/v1/models/{MODEL}/retrain", {"reason": f"after {run}"}
    )
    assert status == 202

    dsn = services.postgres_dsn
    assert await until(
        lambda: _positive(
            count_rows(dsn, "SELECT count(*) FROM feedback WHERE request_id = $1", ids[0])
        )
    ), "feedback after the bad record was not stored"
    assert await until(
        lambda: _positive(
            count_rows(
                dsn,
                "SELECT count(*) FROM deployment_history WHERE reason = $1",
                f"after garbage {run}",
            )
        )
    ), "deployment after the bad record was not recorded"
    # More traffic so that drift windows close after the bad counts record.
    for i in range(40, 120):
        request = {"request_id": f"{run}-{i}", "entity_id": "c000007", "features": LOAN}
        await producer.send_and_wait(
            settings.topic("requests"), orjson.dumps(request), key=keys["requests"]
        )
        await asyncio.sleep(0.05)  # spread over a few 1 s windows
    assert await until(
        lambda: _positive(
            count_rows(
                dsn,
                "SELECT count(*) FROM drift_reports WHERE model = $1 AND window_start >= $2",
                MODEL,
                started,
            )
        )
    ), "no drift window closed after the bad counts record"
    jobs = await metric_reaches(
        worker.base_url,
        "phoenix_retrain_jobs_total",
        1,
        TIMEOUT_S,
        model=MODEL,
        outcome="too_little_data",
    )
    assert jobs >= 1, "the retrain request after the bad record was not run"

    # 3. Each bad record dead-lettered once, naming the topic it came from.
    letters = await consume_json(
        settings.kafka_url,
        settings.topic("dead-letters"),
        len(keys) + 1,
        until=covers({settings.topic(t) for t in keys}, field="source_topic"),
        timeout_s=TIMEOUT_S,
    )
    sources = sorted(str(letter["source_topic"]) for letter in letters)
    assert sources == sorted([*(settings.topic(t) for t in keys), settings.topic("drift-counts")])
    [shape_letter] = [
        (letter["error_kind"], letter["field"])
        for letter in letters
        if letter["source_topic"] == settings.topic("drift-counts")
        and base64.b64decode(str(letter["original_value"])) != GARBAGE
    ]
    assert shape_letter == ("invalid_drift_counts", "counts"), letters


async def _positive(count: Awaitable[int]) -> bool:
    return await count > 0
