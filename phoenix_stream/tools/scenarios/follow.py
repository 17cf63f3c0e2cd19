"""Following a topic from its beginning, for the scenarios' own bookkeeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition


async def follow_json(
    kafka_url: str, topic: str, on_value: Callable[[dict[str, Any]], None]
) -> None:
    """Call ``on_value`` with every JSON object on ``topic``, from the start, until cancelled.

    Waits for the topic to exist; reads every partition without a consumer group.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_url.removeprefix("kafka://"),
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        partitions: set[int] = set()
        while not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
            await asyncio.sleep(0.0 if partitions else 0.2)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for message in (m for messages in batches.values() for m in messages):
                value = orjson.loads(message.value or b"{}")
                if isinstance(value, dict):
                    on_value(value)
    finally:
        await consumer.stop()
