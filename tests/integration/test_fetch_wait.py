"""The adaptive fetch wait on both brokers: a partition starved for real, then fed.

A consumer whose fetches may carry one batch (``fetch_max_bytes=1``: both brokers then
send one batch of the first partition with data and nothing of the others) reads two
partitions with records waiting: every fetch starves the other partition, so patch (8)
of streaming/transport.py must see the starvation in the brokers' own answers and
lengthen the wait; once both partitions are read to their ends it must come back to the
configured wait. Every record is read.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from phoenix_stream import metrics
from phoenix_stream.embedded.manager import ServiceAddresses
from phoenix_stream.streaming.fetch_wait import FetchWait
from phoenix_stream.streaming.transport import adapt_fetch_wait
from phoenix_stream.testing import create_topic

BATCHES = 30  # per partition, one record each
BASE_WAIT_MS = 10
# Only for a failing run on a busy machine; the loops end as soon as their condition holds.
READ_TIMEOUT_S = 120.0


@pytest.mark.brokers("tansu", "kafka")
async def test_a_starved_partition_lengthens_the_wait_until_it_is_fed(
    services: ServiceAddresses,
) -> None:
    bootstrap = services.kafka_url.removeprefix("kafka://")
    topic = f"fetch-wait-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, partitions=2)
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        for i in range(BATCHES):
            await asyncio.gather(
                *[producer.send_and_wait(topic, b"r%d" % i, partition=tp.partition) for tp in tps]
            )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_bytes=1,
        fetch_max_wait_ms=BASE_WAIT_MS,
    )
    await consumer.start()
    fetcher = consumer._fetcher
    adapt_fetch_wait(fetcher, FetchWait(BASE_WAIT_MS))
    starved_before = metrics.FETCH_STARVED._value.get()
    longest_wait = BASE_WAIT_MS
    try:
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        read: dict[int, set[int]] = {0: set(), 1: set()}
        deadline = time.monotonic() + READ_TIMEOUT_S
        while any(len(offsets) < BATCHES for offsets in read.values()):
            assert time.monotonic() < deadline, f"read only {read}"
            for tp, records in (await consumer.getmany(*tps, timeout_ms=500)).items():
                read[tp.partition].update(record.offset for record in records)
            longest_wait = max(longest_wait, fetcher._fetch_max_wait_ms)
        assert read == {0: set(range(BATCHES)), 1: set(range(BATCHES))}
        assert metrics.FETCH_STARVED._value.get() > starved_before
        assert longest_wait > BASE_WAIT_MS

        # Caught up: fetches starve nothing and the wait halves back to the base.
        while fetcher._fetch_max_wait_ms > BASE_WAIT_MS:
            assert time.monotonic() < deadline, f"wait stuck at {fetcher._fetch_max_wait_ms}"
            assert await consumer.getmany(*tps, timeout_ms=200) == {}
    finally:
        await consumer.stop()
