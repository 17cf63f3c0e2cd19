"""The agent loop with a stand-in Faust stream: acks come only after a batch is handled.

Real workers run it in every integration test (tests/integration/test_worker_faults.py
kills one mid-batch).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from phoenix_stream.messages.dead_letters import DeadLetters
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.streaming.batches import run_batches
from phoenix_stream.streaming.failure_policy import FailurePolicy


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Event:
    message: Message


class Stream:
    def __init__(self, batches: list[list[Event]], log: list[str]) -> None:
        self.batches = batches
        self.log = log

    async def noack_take(self, n: int, within: float) -> AsyncIterator[list[Event]]:
        for batch in self.batches:
            yield batch

    async def ack(self, event: Event) -> None:
        self.log.append(f"ack {event.message.offset}")


class Emitter:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def emit(self, records: Sequence[OutRecord]) -> None:
        self.log.extend(f"dead {r.key!r}" for r in records)


def events(offsets: range) -> list[Event]:
    return [Event(Message("in", 0, o, str(o).encode(), b"x")) for o in offsets]


def make_policy(log: list[str], stopping: bool = False) -> FailurePolicy:
    return FailurePolicy(
        "test",
        Emitter(log),  # type: ignore[arg-type]
        DeadLetters("dead", 1024),
        is_stopping=lambda: stopping,
        store_outage=lambda cause: False,  # no database behind these handlers
    )


async def test_each_event_is_acked_after_its_batch_was_handled_and_poison_is_isolated() -> None:
    log: list[str] = []

    async def handle(records: Sequence[InRecord]) -> None:
        if any(r.offset == 2 for r in records):
            raise KeyError("unforeseen")
        log.extend(f"handled {r.offset}" for r in records)

    stream = Stream([events(range(0, 4)), events(range(4, 6))], log)
    await run_batches(stream, handle, make_policy(log), take=10, within_s=0.01)
    first = log[: log.index("ack 3") + 1]
    assert sorted(first[:4]) == ["dead b'2'", "handled 0", "handled 1", "handled 3"]
    assert first[4:] == ["ack 0", "ack 1", "ack 2", "ack 3"]
    assert log[log.index("ack 3") + 1 :] == ["handled 4", "handled 5", "ack 4", "ack 5"]


async def test_groups_are_handled_one_by_one_before_the_acks() -> None:
    log: list[str] = []

    async def handle(records: Sequence[InRecord]) -> None:
        log.append(f"group {[r.offset for r in records]}")

    def pairs(records: Sequence[InRecord]) -> list[Sequence[InRecord]]:
        return [records[i : i + 2] for i in range(0, len(records), 2)]

    stream = Stream([events(range(5))], log)
    await run_batches(stream, handle, make_policy(log), take=10, within_s=0.01, groups=pairs)
    assert log == [
        "group [0, 1]",
        "group [2, 3]",
        "group [4]",
        *(f"ack {i}" for i in range(5)),
    ]


async def test_a_failure_while_stopping_leaves_the_batch_unacked() -> None:
    log: list[str] = []

    async def handle(records: Sequence[InRecord]) -> None:
        raise RuntimeError("shutting down")

    stream = Stream([events(range(3)), events(range(3, 6))], log)
    # The loop ends (an agent that raised would be restarted by Faust mid-stop).
    await run_batches(stream, handle, make_policy(log, stopping=True), take=10, within_s=0.01)
    assert log == []  # nothing acked, and the next batch was not taken
