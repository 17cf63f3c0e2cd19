"""Workers of one consumer group with different agent sets, and ``/ready`` outside the group.

A rolling restart may run workers with different ``PHOENIX_AGENTS`` side by side: one
with the drift agents (Faust tables) and one without must both join the group, and every
request, sent on Kafka or over HTTP to either worker, is answered and stored once. A
worker that cannot join its group (here: the group is held by a member of another group
protocol, which every Kafka broker refuses to mix) answers ``/health`` but not ``/ready``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.settings import AGENTS, DEFAULT_AGENTS, Settings
from phoenix_stream.testing import prediction_rows
from phoenix_stream.tools.worker_process import WorkerProcess, free_port

LOAN = {"credit_amount": 8.0, "duration_months": 36.0, "interest_rate": 6.9}
KAFKA_REQUESTS = 200
HTTP_REQUESTS = 20  # per worker
# Generous bounds for a loaded 2-core machine; the waits return as soon as they are met.
STORED_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 90.0


async def _status(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
        return response.status, await response.json()


async def test_workers_with_different_agents_share_the_group_and_store_every_request_once(
    worker_factory: Any, producer: AIOKafkaProducer, services: ServiceAddresses
) -> None:
    plain: WorkerProcess = await worker_factory.start(agents=DEFAULT_AGENTS)
    settings = plain.settings
    # Same group and topics; this one has the drift agents and their tables.
    drifting: WorkerProcess = await worker_factory.start(
        app_id=settings.app_id, topic_prefix=settings.topic_prefix, agents=AGENTS
    )
    run = uuid.uuid4().hex[:8]
    ids = [f"{run}-{i}" for i in range(KAFKA_REQUESTS)]
    for i, request_id in enumerate(ids):
        entity = f"c{i % 2000:06d}"
        value = {"request_id": request_id, "entity_id": entity, "features": LOAN}
        await producer.send(settings.topic("requests"), orjson.dumps(value), key=entity.encode())
    await producer.flush()
    async with aiohttp.ClientSession() as session:
        for worker in (plain, drifting):
            for i in range(HTTP_REQUESTS):
                request_id = f"{run}-http-{worker.settings.web_port}-{i}"
                async with session.post(
                    f"{worker.base_url}/v1/predict",
                    json={"request_id": request_id, "entity_id": f"c{i:06d}", "features": LOAN},
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as response:
                    assert response.status == 200, await response.text()
                ids.append(request_id)
        # Both are members of the group (and so, ready), whatever their agents.
        for worker in (plain, drifting):
            status, body = await _status(session, f"{worker.base_url}/ready")
            assert status == 200, (body, worker.log_tail())
    rows = await prediction_rows(
        services.postgres_dsn,
        f"{run}-",
        until=lambda rows: len(rows) >= len(ids),
        timeout_s=STORED_TIMEOUT_S,
    )
    stored = [row["request_id"] for row in rows]
    missing = sorted(set(ids) - set(stored))
    assert not missing, (
        f"{len(missing)} of {len(ids)} not stored, e.g. {missing[:5]}; logs: "
        f"{plain.log_path}, {drifting.log_path}"
    )
    assert sorted(stored) == sorted(ids)  # each once (request_id is the primary key)
    for worker in (plain, drifting):
        assert b"InconsistentGroupProtocol" not in worker.log_path.read_bytes()


async def test_ready_fails_while_the_worker_is_not_in_its_group(
    services: ServiceAddresses, models_dir: Path, seeded: int, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_url=services.kafka_url,
        redis_url=services.redis_url,
        postgres_dsn=services.postgres_dsn,
        models_dir=models_dir,
        state_dir=tmp_path,
        app_id=f"test-{tag}",
        topic_prefix=f"t{tag}.",
        topic_partitions=2,
        web_port=free_port(),
    )
    # A member of the worker's group that speaks only the "range" protocol: the broker
    # refuses the worker's JoinGroup (InconsistentGroupProtocol) as long as it stays. It
    # reads a topic of its own (naming one of the app's would have the broker create it).
    held = settings.topic("holder")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_url.removeprefix("kafka://"))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(held, 1, settings.topic_replication)])
    finally:
        await admin.close()
    holder = AIOKafkaConsumer(
        held,
        bootstrap_servers=settings.kafka_url.removeprefix("kafka://"),
        group_id=settings.app_id,
        partition_assignment_strategy=(RangePartitionAssignor,),
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_s * 1000),
    )
    await holder.start()
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not holder.assignment() and time.monotonic() < deadline:
            await holder.getmany(timeout_ms=500)  # joined: it now holds the group
        assert holder.assignment(), "the holder did not join its group"
        worker.start()
        async with aiohttp.ClientSession() as session:
            # Wait until everything but the group answers: then only the group can fail.
            body: Any = None
            while time.monotonic() < deadline:
                await holder.getmany(timeout_ms=100)
                try:
                    status, body = await _status(session, f"{worker.base_url}/ready")
                except (aiohttp.ClientError, TimeoutError):
                    await asyncio.sleep(0.2)
                    continue
                failing = body.get("failing", {})
                refused = "InconsistentGroupProtocolError" in failing.get("kafka group", "")
                if status == 503 and set(failing) == {"kafka group"} and refused:
                    break
                assert status != 200, f"ready outside its group: {body}\n{worker.log_tail()}"
                await asyncio.sleep(0.2)
            assert body is not None and set(body["failing"]) == {"kafka group"}, (
                f"{body}\n{worker.log_tail()}"
            )
            reason = body["failing"]["kafka group"]
            assert settings.app_id in reason and "InconsistentGroupProtocolError" in reason
            status, _ = await _status(session, f"{worker.base_url}/health")
            assert status == 200  # alive, only not ready
            # It keeps trying (aiokafka alone would never join again after this error).
            # Whether it gets in once the holder leaves is the broker's call: Tansu keeps
            # an emptied group's protocol, Kafka forgets it after the session timeout.
            for _ in range(int(READY_TIMEOUT_S)):
                if _joins(worker) >= 3:
                    break
                await asyncio.sleep(1.0)
            assert _joins(worker) >= 3, worker.log_tail()
            status, body = await _status(session, f"{worker.base_url}/ready")
            assert status == 503 and set(body["failing"]) == {"kafka group"}, body
    finally:
        await holder.stop()
        await asyncio.to_thread(worker.stop)


def _joins(worker: WorkerProcess) -> int:
    """JoinGroup attempts the worker logged (aiokafka's line)."""
    return worker.log_path.read_bytes().count(b"(Re-)joining group")
