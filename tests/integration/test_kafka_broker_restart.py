"""Apache Kafka keeps its topics over a restart (Tansu cannot): the deployments replay.

A worker decides a deployment; the broker is stopped and started again; the running worker
goes on predicting, and a worker started afterwards serves the same deployment, read
back from the compacted ``deployments`` topic rather than from its settings' defaults.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from phoenix_stream.embedded import ServiceAddresses, start_services, stop_services
from phoenix_stream.streaming.producers import new_producer
from phoenix_stream.testing import consume_json, covers
from phoenix_stream.tools.worker_process import WorkerProcess

TOKEN = "restart-token"
MODEL = "credit-risk"


async def http(method: str, url: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.request(method, url, data=orjson.dumps(body), headers=headers) as response,
    ):
        return response.status, orjson.loads(await response.read())


async def serving(worker: WorkerProcess) -> dict[str, Any]:
    status, body = await http("GET", f"{worker.base_url}/v1/deployments/{MODEL}")
    return dict(body["serving"]) if status == 200 else {}


async def eventually(check: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False


async def send_requests(kafka_url: str, topic: str, run: str, count: int) -> list[str]:
    producer: AIOKafkaProducer = new_producer(kafka_url)
    await producer.start()
    try:
        ids = [f"{run}-{i}" for i in range(count)]
        for i, request_id in enumerate(ids):
            value = {"request_id": request_id, "entity_id": f"c{i:06d}"}
            await producer.send(topic, orjson.dumps(value), key=str(i).encode())
        await producer.flush()
        return ids
    finally:
        await producer.stop()


@pytest.mark.brokers("kafka")
async def test_deployments_replay_after_the_broker_restarts(
    worker_factory: Any,
    services: ServiceAddresses,
    broker_state_dir: Path,
    managed_services: frozenset[str],
    broker_kind: str,
) -> None:
    if "broker" not in managed_services:
        pytest.skip("PHOENIX_KAFKA_URL is set: this session cannot restart that broker")
    first: WorkerProcess = await worker_factory.start(admin_token=TOKEN, challenger_version="")
    status, body = await http(
        "PUT",
        f"{first.base_url}/v1/deployments/{MODEL}",
        {"champion": "2", "reason": "before the restart"},
        Authorization=f"Bearer {TOKEN}",
    )
    assert status == 200, body
    generation = body["deployment"]["generation"]

    async def at_generation() -> bool:
        return (await serving(first)).get("generation") == generation

    assert await eventually(at_generation, 30.0)

    await asyncio.to_thread(stop_services, broker_state_dir, ["broker"])
    again = await asyncio.to_thread(
        start_services, broker_state_dir, ["broker"], broker=broker_kind
    )
    assert again.kafka_url == services.kafka_url  # same ports, same data

    settings = first.settings
    # The worker that lived through the restart reconnects and predicts again.
    ids = await send_requests(settings.kafka_url, settings.topic("requests"), uuid.uuid4().hex, 50)
    served = await consume_json(
        settings.kafka_url, settings.topic("predictions"), until=covers(ids), timeout_s=120.0
    )
    ours = [p for p in served if p["request_id"] in set(ids)]
    assert {(p["variant"], p["version"]) for p in ours} == {("champion", "2")}

    # A worker started now reads the decision back from the compacted topic.
    same = {"app_id": settings.app_id, "topic_prefix": settings.topic_prefix}
    second: WorkerProcess = await worker_factory.start(
        admin_token=TOKEN, challenger_version="", **same
    )
    replayed = await serving(second)
    assert (replayed.get("generation"), replayed.get("champion")) == (generation, "2"), (
        second.log_tail()
    )
