"""The emitter against a scripted stand-in for aiokafka's producer.

Delivery against the real broker is covered by every integration test; an oversized
record on the real broker in tests/integration/test_hostile_records.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import errors as kafka_errors

from phoenix_stream.exceptions import ProduceError
from phoenix_stream.messages.dead_letters import DeadLetters
from phoenix_stream.messages.records import OutRecord
from phoenix_stream.streaming.emitter import BatchEmitter

MAX_BATCH_BYTES = 5000
BROKER_LIMIT = 1500  # the "broker" refuses a batch holding a value larger than this


class Batch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes]] = []
        self.size = 0

    def append(self, *, key: bytes | None, value: bytes, timestamp: None) -> object | None:
        if self.records and self.size + len(value) > MAX_BATCH_BYTES:
            return None
        if len(value) > 4 * MAX_BATCH_BYTES:
            return None  # larger than any batch
        self.records.append((key, value))
        self.size += len(value)
        return object()


class Producer:
    """Delivers unless told to fail; refuses values over BROKER_LIMIT like a broker."""

    def __init__(self, outage_rounds: int = 0) -> None:
        self.outage_rounds = outage_rounds
        self.delivered: list[tuple[str, int, bytes]] = []
        self.batches_sent = 0

    def create_batch(self) -> Batch:
        return Batch()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def _result(self, topic: str, partition: int, values: list[bytes]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.outage_rounds > 0:
            future.set_exception(kafka_errors.KafkaConnectionError("broker down"))
        elif any(len(v) > BROKER_LIMIT for v in values):
            future.set_exception(kafka_errors.MessageSizeTooLargeError("too large"))
        else:
            self.delivered.extend((topic, partition, v) for v in values)
            future.set_result(None)
        return future

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.batches_sent += 1
        return self._result(topic, partition, [v for _, v in batch.records])

    async def send(self, topic: str, *, value: bytes, key: bytes | None) -> asyncio.Future[Any]:
        if len(value) > 4 * MAX_BATCH_BYTES:
            raise kafka_errors.MessageSizeTooLargeError("over max_request_size")
        return self._result(topic, 0, [value])

    def end_round(self) -> None:
        self.outage_rounds -= 1


def emitter(producer: Producer, *, stopping: bool = False) -> BatchEmitter:
    letters = DeadLetters("dead", 64)

    def fetch() -> Any:
        return producer

    original_collect = BatchEmitter._collect

    class Counting(BatchEmitter):
        async def _collect(self, sent: Any) -> Any:
            failed = await original_collect(self, sent)
            producer.end_round()
            return failed

    return Counting(
        fetch,
        min_backoff_s=0.001,
        max_backoff_s=0.002,
        is_stopping=lambda: stopping,
        on_undeliverable=letters.undeliverable,
    )


def outs(n: int, size: int = 10, topic: str = "predictions") -> list[OutRecord]:
    return [OutRecord(topic, f"k{i}".encode(), bytes([65 + i % 26]) * size) for i in range(n)]


@pytest.mark.parametrize("n", [1, 15, 16, 200])
async def test_everything_is_delivered_once(n: int) -> None:
    producer = Producer()
    records = outs(n)
    await emitter(producer).emit(records)
    assert sorted(v for _, _, v in producer.delivered) == sorted(r.value for r in records)


async def test_batches_group_records_per_partition() -> None:
    producer = Producer()
    await emitter(producer).emit(outs(60))
    # 60 x 10 bytes over three partitions: one batch each.
    assert producer.batches_sent == 3


async def test_an_outage_is_retried_until_delivered() -> None:
    producer = Producer(outage_rounds=3)
    records = outs(40)
    await emitter(producer).emit(records)
    assert sorted(v for _, _, v in producer.delivered) == sorted(r.value for r in records)


async def test_while_stopping_an_outage_raises_so_input_stays_unacked() -> None:
    with pytest.raises(ProduceError, match="undelivered"):
        await emitter(Producer(outage_rounds=100), stopping=True).emit(outs(20))


@pytest.mark.parametrize("n", [1, 40])
async def test_a_record_the_broker_refuses_is_dead_lettered_and_its_batch_mates_delivered(
    n: int,
) -> None:
    producer = Producer()
    good = outs(n)
    too_large = OutRecord("predictions", b"k3", b"Z" * (BROKER_LIMIT + 1))
    await emitter(producer).emit([*good, too_large])
    delivered = [(topic, v) for topic, _, v in producer.delivered]
    assert sorted(v for t, v in delivered if t == "predictions") == sorted(r.value for r in good)
    dead = [v for t, v in delivered if t == "dead"]
    assert len(dead) == 1 and b'"undeliverable"' in dead[0]


async def test_a_record_larger_than_any_batch_is_dead_lettered_not_retried_forever() -> None:
    producer = Producer()
    huge = OutRecord("predictions", b"k", b"Z" * (5 * MAX_BATCH_BYTES))
    await emitter(producer).emit([*outs(20), huge])
    assert [t for t, _, _ in producer.delivered].count("dead") == 1
    await emitter(producer).emit([huge])  # also on the path for a handful of records
    assert [t for t, _, _ in producer.delivered].count("dead") == 2


async def test_an_undeliverable_dead_letter_is_dropped_not_retried_forever() -> None:
    producer = Producer()
    await emitter(producer).emit([OutRecord("dead", b"k", b"Z" * (BROKER_LIMIT + 1))])
    assert producer.delivered == []
