"""The stall log's fetcher line reads a real aiokafka consumer: position, status, fetch
routine, for every assigned partition (it reaches into aiokafka 0.14's private state, so
an upgrade that moves it shows here, not in a stall at night)."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from phoenix_stream.embedded.manager import ServiceAddresses
from phoenix_stream.streaming.transport import describe_fetcher

TIMEOUT_S = 60.0


async def test_the_fetcher_line_names_each_partition_and_its_position(
    services: ServiceAddresses,
) -> None:
    bootstrap = services.kafka_url.removeprefix("kafka://")
    topic = f"fetcher-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, b"x", partition=0, key=b"%d" % i)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got = 0
        deadline = time.monotonic() + TIMEOUT_S
        while got < 3 and time.monotonic() < deadline:
            got += sum(len(r) for r in (await consumer.getmany(timeout_ms=200)).values())
        assert got == 3
        app: Any = SimpleNamespace(
            consumer=SimpleNamespace(_thread=SimpleNamespace(_consumer=consumer))
        )
        line = describe_fetcher(app)
        assert line.startswith("fetch routine running;"), line
        assert f"{topic}[0] at 3 " in line, line
    finally:
        await consumer.stop()
    assert describe_fetcher(app).startswith("fetch routine ended;")
