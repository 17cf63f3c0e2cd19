"""Helpers for tests of code built on phoenix-stream (and for its own tests)."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition


async def consume_json(
    kafka_url: str,
    topic: str,
    expected: int,
    timeout_s: float = 60.0,
) -> list[dict[str, object]]:
    """JSON values of ``topic`` from the beginning, until ``expected`` or ``timeout_s`` seconds."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_url.removeprefix("kafka://"),
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    out: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + timeout_s
        partitions: set[int] = set()
        while not partitions and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                out.extend(orjson.loads(m.value or b"null") for m in messages)
    finally:
        await consumer.stop()
    return out
