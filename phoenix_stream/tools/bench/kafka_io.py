"""Kafka plumbing of the benchmark: topics, pre-producing input, waiting, reading outputs.

The embedded broker reports wrong end offsets (docs/architecture.md section 6), so the
end of the input is taken from the producer's own delivery reports, and the end of a
phase from the consumer group's committed offsets (OffsetFetch works on it; the admin
client's does not).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from phoenix_stream.exceptions import ServiceError
from phoenix_stream.settings import bootstrap_servers
from phoenix_stream.streaming.producers import new_producer
from phoenix_stream.tools.bench.stats import OutputStamp

__all__ = [
    "OutputRead",
    "bootstrap",
    "ensure_topics",
    "partitions_of",
    "produce_records",
    "read_outputs",
    "wait_committed",
]

_TOPIC_ALREADY_EXISTS = 36  # Kafka error code


def bootstrap(kafka_url: str) -> str:
    """``host:port`` of a ``kafka://host:port`` URL."""
    return bootstrap_servers(kafka_url)


async def ensure_topics(kafka_url: str, names: Iterable[str], partitions: int) -> None:
    """Create the topics (``partitions`` each) unless they exist; ServiceError otherwise."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(kafka_url))
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()
    for topic, code, *rest in response.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            raise ServiceError(f"could not create topic {topic}: error {code} {rest}")


async def partitions_of(
    consumer: AIOKafkaConsumer, topic: str, timeout_s: float = 10.0
) -> list[int]:
    """Partition numbers of ``topic``, waiting for its metadata up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        if time.monotonic() > deadline:
            raise ServiceError(f"topic {topic} did not appear within {timeout_s} s")
        await asyncio.sleep(0.1)


async def produce_records(
    kafka_url: str, topic: str, records: Iterable[tuple[bytes, bytes]]
) -> dict[int, int]:
    """Produce (key, value) records and wait for delivery; end offset per partition."""
    producer = new_producer(
        kafka_url,
        linger_ms=5,
        max_batch_size=1_048_576,
        max_request_size=4 * 1_048_576,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in records]
        delivered = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    ends: dict[int, int] = {}
    for meta in delivered:
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    return ends


async def wait_committed(
    kafka_url: str,
    group_id: str,
    topic: str,
    ends: dict[int, int],
    timeout_s: float,
    alive: Callable[[], bool],
) -> bool:
    """Poll ``group_id``'s committed offsets until they reach ``ends``; whether they did.

    Stops early (False) when ``alive()`` turns false: the process under test died.
    Reading commits instead of outputs keeps the bench process off the CPU meanwhile.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap(kafka_url), group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and alive():
            done = True
            for partition, end in ends.items():
                committed = await consumer.committed(TopicPartition(topic, partition))
                if committed is None or committed < end:
                    done = False
                    break
            if done:
                return True
            await asyncio.sleep(0.25)
        return False
    finally:
        await consumer.stop()


@dataclass
class OutputRead:
    """What ``read_outputs`` found: stamps, how many were flagged degraded, JSON errors."""

    stamps: list[OutputStamp] = field(default_factory=list)
    degraded: int = 0
    create_time: bool = True  # False if any record carried LogAppendTime instead


async def read_outputs(kafka_url: str, topic: str, expected: int, timeout_s: float) -> OutputRead:
    """Read ``topic`` from the start until ``expected`` records or ``timeout_s`` seconds."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap(kafka_url),
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 1_048_576,
    )
    await consumer.start()
    out = OutputRead()
    try:
        deadline = time.monotonic() + timeout_s
        tps = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(out.stamps) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
            for messages in batches.values():
                for message in messages:
                    _take(out, message.timestamp, message.timestamp_type, message.value)
    finally:
        await consumer.stop()
    return out


def _take(out: OutputRead, timestamp_ms: int, timestamp_type: int, value: bytes | None) -> None:
    batch: float | None = None
    try:
        data = orjson.loads(value or b"null")
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        received = data.get("received_at")
        batch = float(received) if isinstance(received, int | float) else None
        out.degraded += data.get("degraded") is True
    out.create_time = out.create_time and timestamp_type == 0
    out.stamps.append(OutputStamp(timestamp_ms, batch))
