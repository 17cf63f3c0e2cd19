"""The end-offset read keeps the broker's end when the read fails (fakes: the reads
themselves run on both brokers in tests/integration/test_end_offsets.py)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from phoenix_stream.streaming.end_offsets import read_end_offsets

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


class _Unreachable:
    stopped = False

    async def start(self) -> None:
        raise KafkaConnectionError("no broker")

    async def stop(self) -> None:
        self.stopped = True


class _Silent:
    """Started, but no fetch ever answers and the position never moves."""

    async def start(self) -> None:
        pass

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.partitions = partitions

    def seek(self, tp: TopicPartition, offset: int) -> None:
        pass

    async def getmany(self, *tps: TopicPartition, timeout_ms: int) -> dict[Any, Any]:
        await asyncio.sleep(timeout_ms / 1000)  # as a fetch that waits and gets nothing
        return {}

    async def position(self, tp: TopicPartition) -> int:
        return 4

    async def stop(self) -> None:
        pass


async def test_a_broker_out_of_reach_keeps_the_reported_ends() -> None:
    fake = _Unreachable()
    ends = await read_end_offsets({TP0: 5, TP1: None}, lambda: cast(AIOKafkaConsumer, fake))
    assert ends == {TP0: 5, TP1: None}
    assert fake.stopped


async def test_a_read_that_never_answers_ends_in_time_with_the_reported_ends() -> None:
    ends = await read_end_offsets(
        {TP0: 5}, lambda: cast(AIOKafkaConsumer, _Silent()), timeout_s=0.3
    )
    assert ends == {TP0: 5}


async def test_empty_partitions_need_no_read() -> None:
    def never() -> AIOKafkaConsumer:
        raise AssertionError("no consumer needed")

    assert await read_end_offsets({TP0: 0, TP1: None}, never) == {TP0: 0, TP1: None}
