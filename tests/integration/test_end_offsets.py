"""End offsets read from the log: right on both brokers, where Tansu's answer is short.

Records go to a partition in batches of many (a producer that lingers); the broker's
ListOffsets answer is compared with the offsets the producer was given, and with what
``read_end_offsets`` (the end Faust's table recovery reads up to, patch (7) of
streaming/transport.py) finds.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from phoenix_stream.embedded.manager import ServiceAddresses
from phoenix_stream.streaming.end_offsets import read_end_offsets
from phoenix_stream.testing import create_topic

BATCHES = 5
RECORDS_PER_BATCH = 40


def _bootstrap(services: ServiceAddresses) -> str:
    return services.kafka_url.removeprefix("kafka://")


async def _produce_batches(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """Batches of records to partitions 0 and 1; the offset after each one's last record."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    last: dict[TopicPartition, int] = {}
    try:
        for _ in range(BATCHES):
            sent = [
                await producer.send(topic, b"x" * 64, key=b"%d" % i, partition=i % 2)
                for i in range(RECORDS_PER_BATCH)
            ]
            for metadata in await asyncio.gather(*sent):
                tp = TopicPartition(topic, metadata.partition)
                last[tp] = max(last.get(tp, -1), metadata.offset)
    finally:
        await producer.stop()
    return {tp: offset + 1 for tp, offset in last.items()}


@pytest.mark.brokers("tansu", "kafka")
async def test_end_offsets_read_from_the_log_are_the_true_ends(
    services: ServiceAddresses, broker_kind: str
) -> None:
    bootstrap = _bootstrap(services)
    topic = f"end-offsets-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, partitions=3)
    true_ends = await _produce_batches(bootstrap, topic)
    empty = TopicPartition(topic, 2)

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        reported = await consumer.end_offsets([*true_ends, empty])
    finally:
        await consumer.stop()

    def reader() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
        )

    ends = await read_end_offsets(dict(reported), reader)
    assert ends == {**true_ends, empty: 0}, (reported, true_ends)
    if broker_kind == "tansu":
        # The flaw the read is for: short by all but the first record of the last batch.
        assert all(reported[tp] < end for tp, end in true_ends.items()), (reported, true_ends)
    else:
        assert reported == {**true_ends, empty: 0}
