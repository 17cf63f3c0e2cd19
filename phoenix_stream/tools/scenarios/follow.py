"""Following a topic from its beginning, for the scenarios' own bookkeeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from phoenix_stream.settings import bootstrap_servers
from phoenix_stream.streaming.kafka_auth import PLAINTEXT, KafkaAuth, client_options

RECHECK_S = 2.0  # how often the topic's partitions are looked up again


async def follow_json(
    kafka_url: str,
    topic: str,
    on_value: Callable[[dict[str, Any]], None],
    *,
    auth: KafkaAuth = PLAINTEXT,
) -> None:
    """Call ``on_value`` with every JSON object on ``topic``, from the start, until cancelled.

    Waits for the topic to exist; reads every partition without a consumer group. The
    partitions are looked up again every ``RECHECK_S``: metadata read just after the topic
    was created may not list them all yet, and a partition missed would read as lost records.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(kafka_url),
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        **client_options(auth),
    )
    await consumer.start()
    try:
        assigned: set[TopicPartition] = set()
        checked = 0.0
        while True:
            if time.monotonic() - checked >= RECHECK_S or not assigned:
                await consumer._client.force_metadata_update()
                checked = time.monotonic()
                partitions = consumer.partitions_for_topic(topic) or set()
                new = {TopicPartition(topic, p) for p in partitions} - assigned
                if new:
                    # assign() replaces the assignment and forgets positions: keep them.
                    kept = {tp: await consumer.position(tp) for tp in assigned}
                    assigned |= new
                    consumer.assign(sorted(assigned))
                    for tp, position in kept.items():
                        consumer.seek(tp, position)
                    await consumer.seek_to_beginning(*new)
            if not assigned:
                await asyncio.sleep(0.2)
                continue
            batches = await consumer.getmany(timeout_ms=200)
            for message in (m for messages in batches.values() for m in messages):
                value = orjson.loads(message.value or b"{}")
                if isinstance(value, dict):
                    on_value(value)
    finally:
        await consumer.stop()
