"""A 3-node Apache Kafka cluster loses the broker that leads most ``requests`` partitions.

Topics replicated 3 times with 2 in sync, producers with acks=all: under steady load the
leader is SIGKILLed, then started again. Every acknowledged request is predicted and
stored once, ``/ready`` names the missing broker and the under-replicated partitions
while it is gone, and the time from the kill until predictions flow again on every
partition is measured and printed (``-s`` shows it; it is a figure, never asserted).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.embedded.kafka import KafkaClusterService
from phoenix_stream.embedded.process import free_port
from phoenix_stream.settings import bootstrap_servers
from phoenix_stream.streaming.producers import new_producer
from phoenix_stream.testing import prediction_rows
from phoenix_stream.tools.worker_process import WorkerProcess

NODES = 3
PARTITIONS = 6
RATE_PER_S = 100
LOAD_S = 40.0  # the whole load, kill and restart included (bounded)
STORED_TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaClusterService]:
    """Three Kafka nodes of their own (not the session's broker), stopped after the module."""
    service = KafkaClusterService(tmp_path_factory.mktemp("kafka3"), NODES)
    record = service.start(free_port())
    try:
        yield service
    finally:
        service.stop(record)


@dataclass
class Traffic:
    """Requests sent at a steady rate: when each was acknowledged, and on which partition."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    acked: dict[str, tuple[float, int]] = field(default_factory=dict)  # id -> (time, partition)
    failed: int = 0


async def steady_load(kafka_url: str, topic: str, traffic: Traffic, stop: asyncio.Event) -> None:
    producer = new_producer(kafka_url, linger_ms=5, request_timeout_ms=30_000)
    await producer.start()
    try:
        deadline = time.monotonic() + LOAD_S
        sent = 0
        pending: list[tuple[str, asyncio.Future[Any]]] = []
        while not stop.is_set() and time.monotonic() < deadline:
            for _ in range(RATE_PER_S // 10):
                request_id = f"{traffic.run}-{sent}"
                value = {"request_id": request_id, "entity_id": f"c{sent % 2000:06d}"}
                future = await producer.send(topic, orjson.dumps(value), key=request_id.encode())
                pending.append((request_id, future))
                sent += 1
            await asyncio.sleep(0.1)
            pending = _collect(pending, traffic)
        for request_id, future in pending:
            try:
                metadata = await future
            except Exception:  # a send the producer gave up on: not acknowledged
                traffic.failed += 1
            else:
                traffic.acked[request_id] = (time.monotonic(), metadata.partition)
    finally:
        await producer.stop()


def _collect(
    pending: list[tuple[str, asyncio.Future[Any]]], traffic: Traffic
) -> list[tuple[str, asyncio.Future[Any]]]:
    waiting = []
    for request_id, future in pending:
        if not future.done():
            waiting.append((request_id, future))
        elif future.exception() is not None:
            traffic.failed += 1
        else:
            traffic.acked[request_id] = (time.monotonic(), future.result().partition)
    return waiting


@pytest.fixture
async def arrivals(cluster: KafkaClusterService) -> AsyncIterator[Callable[[str], Any]]:
    """Follow a predictions topic: request id -> when its first prediction arrived."""
    tasks: list[asyncio.Task[None]] = []
    seen: dict[str, float] = {}

    def follow(topic: str) -> dict[str, float]:
        tasks.append(asyncio.create_task(_follow(cluster, topic, seen)))
        return seen

    yield follow
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _follow(cluster: KafkaClusterService, topic: str, seen: dict[str, float]) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers(cluster.url(cluster.node_list())),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    request_id = str(orjson.loads(record.value)["request_id"])
                    seen.setdefault(request_id, now)
    finally:
        await consumer.stop()


async def leaders(kafka_url: str, topic: str) -> dict[int, int]:
    """Partition -> leader node id of ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(kafka_url))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return {p["partition"]: p["leader"] for p in described["partitions"]}
    finally:
        await admin.close()


async def ready_answer(worker: WorkerProcess) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{worker.base_url}/ready") as response,
    ):
        return dict(orjson.loads(await response.read()))


async def eventually(check: Callable[[], Any], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.25)
    return False


@pytest.mark.brokers("kafka")
@pytest.mark.timeout(900)  # three JVMs start and one restarts on a busy 2-core machine
async def test_a_broker_dies_under_load_and_nothing_is_lost(
    cluster: KafkaClusterService,
    factory_for: Callable[[ServiceAddresses], Any],
    backing_services: ServiceAddresses,
    arrivals: Callable[[str], dict[str, float]],
    broker_kind: str,
    tmp_path: Path,
) -> None:
    addresses = replace(backing_services, kafka_url=cluster.url(cluster.node_list()))
    worker: WorkerProcess = await factory_for(addresses).start(
        topic_partitions=PARTITIONS, topic_replication=NODES, topic_min_insync=2
    )
    settings = worker.settings
    requests_topic = settings.topic("requests")
    seen = arrivals(settings.topic("predictions"))
    traffic = Traffic()
    stop = asyncio.Event()
    load = asyncio.create_task(steady_load(settings.kafka_url, requests_topic, traffic, stop))
    try:
        # Predictions flow before the kill.
        assert await eventually(lambda: _true(len(seen) >= 200), 60.0), worker.log_tail()
        led = Counter((await leaders(settings.kafka_url, requests_topic)).values())
        victim = led.most_common(1)[0][0]
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.kill_node, victim)

        # The worker's /ready names what it saw while the node is gone.
        answers: list[dict[str, Any]] = []

        async def reports_the_loss() -> bool:
            answers.append(await ready_answer(worker))
            kafka = answers[-1].get("kafka") or {}
            return victim in kafka.get("missing_brokers", []) and bool(
                kafka.get("under_replicated", {}).get(requests_topic)
            )

        assert await eventually(reports_the_loss, 60.0), answers[-3:]
        # Predictions flow again on every partition: one of a request acked after the kill.
        flowing: dict[int, float] = {}

        async def every_partition_flows() -> bool:
            for request_id, arrived in list(seen.items()):
                acked = traffic.acked.get(request_id)
                if acked is not None and acked[0] > killed_at:
                    flowing.setdefault(acked[1], arrived)
            return len(flowing) == PARTITIONS

        assert await eventually(every_partition_flows, 90.0), sorted(flowing)
        await asyncio.to_thread(cluster.start_node, victim)
        restarted_at = time.monotonic()
    finally:
        stop.set()
        await load
    assert traffic.acked, "no request was acknowledged"
    ids = set(traffic.acked)
    rows = await prediction_rows(
        backing_services.postgres_dsn,
        f"{traffic.run}-",
        until=lambda rows: len(rows) >= len(ids),
        timeout_s=STORED_TIMEOUT_S,
    )
    stored = Counter(str(row["request_id"]) for row in rows)
    missing = ids - set(stored)
    assert not missing, f"{len(missing)} of {len(ids)} acknowledged requests not stored"
    assert all(count == 1 for count in stored.values())
    assert ids <= set(seen)  # every acknowledged request was predicted
    recovery = sorted(arrived - killed_at for arrived in flowing.values())
    print(  # the figure the README quotes (run with -s)
        f"\nfailover: killed node {victim} (led {led[victim]} of {PARTITIONS} partitions); "
        f"predictions on every partition again {recovery[-1]:.1f} s after the kill "
        f"(first partition {recovery[0]:.1f} s); node back after "
        f"{restarted_at - killed_at:.1f} s; {len(ids)} requests acknowledged, "
        f"{traffic.failed} sends failed, all stored once"
    )


async def _true(value: bool) -> bool:
    return value
