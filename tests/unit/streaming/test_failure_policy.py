"""The failure policy with a recording emitter: outages retry, bugs are isolated.

The same policy runs in real workers in tests/integration/test_hostile_records.py.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import orjson
import pytest

from phoenix_stream.exceptions import (
    FeatureStoreError,
    ProduceError,
    ShuttingDown,
    SinkError,
    Undeliverable,
)
from phoenix_stream.messages.dead_letters import DeadLetters
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.storage.database import is_transient as is_database_outage
from phoenix_stream.streaming.failure_policy import FailurePolicy, is_transient


class RecordingEmitter:
    def __init__(self) -> None:
        self.emitted: list[OutRecord] = []

    async def emit(self, records: Sequence[OutRecord]) -> None:
        self.emitted.extend(records)


def records(n: int) -> list[InRecord]:
    return [InRecord("in", i % 2, i, f"k{i}".encode(), f"v{i}".encode()) for i in range(n)]


def policy(emitter: RecordingEmitter, *, stopping: bool = False) -> FailurePolicy:
    return FailurePolicy(
        "test",
        emitter,  # type: ignore[arg-type]
        DeadLetters("dead", 1024),
        is_stopping=lambda: stopping,
        store_outage=is_database_outage,
        min_backoff_s=0.001,
        max_backoff_s=0.002,
    )


class PoisonHandler:
    """Handles a batch unless it holds a poison offset; records what it handled."""

    def __init__(self, poison: set[int]) -> None:
        self.poison = poison
        self.calls = 0
        self.handled: list[int] = []

    async def __call__(self, batch: Sequence[InRecord]) -> None:
        self.calls += 1
        bad = [r.offset for r in batch if r.offset in self.poison]
        if bad:
            raise RecursionError(f"poison at {bad[0]}")
        self.handled.extend(r.offset for r in batch)


@pytest.mark.parametrize(("n", "poison"), [(1, {0}), (7, {3}), (500, {0, 250, 499}), (64, set())])
async def test_poison_records_are_isolated_and_the_rest_handled(n: int, poison: set[int]) -> None:
    emitter = RecordingEmitter()
    handler = PoisonHandler(poison)
    await policy(emitter).run(records(n), handler)
    assert sorted(handler.handled) == [i for i in range(n) if i not in poison]
    dead = [orjson.loads(r.value) for r in emitter.emitted]
    assert sorted(d["offset"] for d in dead) == sorted(poison)
    for letter in dead:
        assert letter["error_kind"] == "processing_error"
        assert letter["error"].startswith("RecursionError: poison at")
        assert base64.b64decode(letter["original_value"]) == f"v{letter['offset']}".encode()
    assert all(r.topic == "dead" for r in emitter.emitted)


async def test_isolation_costs_logarithmic_calls_not_one_per_record() -> None:
    handler = PoisonHandler({137})
    await policy(RecordingEmitter()).run(records(512), handler)
    # 1 failed whole call + 2 per level of a 9-level split: far fewer than 512.
    assert handler.calls <= 2 * 9 + 1


async def test_outage_retries_the_whole_batch_and_dead_letters_nothing() -> None:
    emitter = RecordingEmitter()
    failures = [FeatureStoreError("down"), ProduceError("broker down"), ConnectionError("x")]
    seen: list[int] = []

    async def handle(batch: Sequence[InRecord]) -> None:
        seen.append(len(batch))
        if failures:
            raise failures.pop(0)

    await policy(emitter).run(records(10), handle)
    assert seen == [10, 10, 10, 10]  # never split on an outage
    assert emitter.emitted == []


async def test_while_stopping_a_failure_ends_the_batch_unhandled_so_events_stay_unacked() -> None:
    emitter = RecordingEmitter()

    async def handle(batch: Sequence[InRecord]) -> None:
        raise ValueError("bug")

    with pytest.raises(ShuttingDown, match=r"stopping; 4 records from .* left unacknowledged"):
        await policy(emitter, stopping=True).run(records(4), handle)
    assert emitter.emitted == []  # neither split nor dead-lettered


def test_classification() -> None:
    assert is_transient(FeatureStoreError("x"), is_database_outage)
    assert is_transient(ProduceError("x"), is_database_outage)
    assert not is_transient(Undeliverable("x"), is_database_outage)
    assert is_transient(TimeoutError(), is_database_outage)
    assert not is_transient(FileNotFoundError("a bug, not an outage"), is_database_outage)
    assert not is_transient(ValueError("x"), is_database_outage)
    transient_sink = SinkError("down")
    transient_sink.__cause__ = ConnectionRefusedError()
    assert is_transient(transient_sink, is_database_outage)
    permanent_sink = SinkError("bad row")
    permanent_sink.__cause__ = ValueError("out of range")
    assert not is_transient(permanent_sink, is_database_outage)
