"""The consumer runner: what a spec's agent does with one batch, and that it registers.

The agents it runs are tested on real brokers in tests/integration (dead letters in
test_agents_undecodable.py and test_control_records.py, acks in test_worker_faults.py).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.app import create_app
from phoenix_stream.exceptions import Unauthenticated, ValidationError
from phoenix_stream.messages.dead_letters import DeadLetters
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.messages.validation import Rejected
from phoenix_stream.settings import AGENTS, Settings
from phoenix_stream.streaming.consumers import ConsumerSpec, Taken, handle_batch, one_message

LETTERS = DeadLetters("t.dead-letters", 1_000)


def record(value: bytes | None, offset: int = 0) -> InRecord:
    return InRecord("t.in", 0, offset, b"k", value)


def parse(rec: InRecord) -> str | None:
    if rec.value is None:
        return None
    if rec.value.startswith(b"forged"):
        raise Unauthenticated("$", "not signed")
    if rec.value.startswith(b"bad"):
        raise ValidationError("thing", "is bad")
    return rec.value.decode("latin-1")  # any bytes


class Run:
    """A spec on ``parse`` whose handler records what it got and returns one output."""

    def __init__(self, decode: object = None) -> None:
        self.handled: list[list[str]] = []
        self.emitted: list[list[OutRecord]] = []
        self.spec: ConsumerSpec[str] = ConsumerSpec(
            name="thing",
            topic=None,  # type: ignore[arg-type]  # not used by handle_batch
            decode=decode or one_message(parse, "invalid_thing"),  # type: ignore[arg-type]
            handle=self.handle,
            take=10,
            within_s=0.1,
        )

    async def handle(self, taken: Sequence[Taken[str]]) -> Sequence[OutRecord]:
        self.handled.append([message for _, message in taken])
        return [OutRecord("t.out", None, f"{len(taken)} handled".encode())]

    async def emit(self, records: list[OutRecord]) -> None:
        self.emitted.append(records)

    async def batch(self, records: Sequence[InRecord]) -> None:
        await handle_batch(self.spec, records, LETTERS, self.emit)


def letter(out: OutRecord) -> dict[str, object]:
    assert out.topic == "t.dead-letters" and out.value is not None
    body: dict[str, object] = orjson.loads(out.value)
    return body


async def test_valid_messages_are_handled_in_order_and_rejections_dead_lettered_after() -> None:
    run = Run()
    await run.batch(
        [
            record(b"a", 0),
            record(b"bad x", 1),
            record(None, 2),
            record(b"forged", 3),
            record(b"b", 4),
        ]
    )
    assert run.handled == [["a", "b"]]  # the tombstone (None) is nothing to do
    [emitted] = run.emitted
    dead, outputs = emitted[:2], emitted[2:]
    assert [(letter(d)["error_kind"], letter(d)["offset"]) for d in dead] == [
        ("invalid_thing", 1),
        ("unauthenticated_control", 3),
    ]
    assert letter(dead[0])["field"] == "thing"
    assert base64.b64decode(str(letter(dead[0])["original_value"])) == b"bad x"
    assert [o.value for o in outputs] == [b"2 handled"]


async def test_a_batch_of_rejections_only_calls_no_handler() -> None:
    run = Run()
    await run.batch([record(b"bad", 0), record(None, 1)])
    assert run.handled == []
    assert [[letter(d)["error_kind"] for d in out] for out in run.emitted] == [["invalid_thing"]]


async def test_a_failing_handler_emits_nothing() -> None:
    run = Run()

    async def down(taken: Sequence[Taken[str]]) -> Sequence[OutRecord]:
        raise ConnectionError("PostgreSQL is down")

    object.__setattr__(run.spec, "handle", down)
    with pytest.raises(ConnectionError):
        await run.batch([record(b"bad", 0), record(b"a", 1)])
    assert run.emitted == []  # the policy retries the batch whole: no letter twice


async def test_a_record_of_many_items_keeps_each_rejection_and_its_own_bytes() -> None:
    def items(rec: InRecord) -> list[str | Rejected]:
        return ["x", Rejected("invalid_item", "no", "label", b'{"label":2}', 1), "y"]

    run = Run(decode=items)
    await run.batch([record(b'[{"a":1},{"label":2},{"b":1}]')])
    assert run.handled == [["x", "y"]]
    [dead] = [d for d in run.emitted[0] if d.topic == "t.dead-letters"]
    assert letter(dead)["batch_index"] == 1
    assert base64.b64decode(str(letter(dead)["original_value"])) == b'{"label":2}'


@given(st.lists(st.one_of(st.none(), st.binary(max_size=20)), max_size=20))
async def test_every_record_is_handled_dead_lettered_or_skipped_once(
    values: list[bytes | None],
) -> None:
    run = Run()
    records = [record(value, offset) for offset, value in enumerate(values)]
    await run.batch(records)
    handled = [m for batch in run.handled for m in batch]
    dead = [letter(d)["offset"] for out in run.emitted for d in out if d.topic == "t.dead-letters"]
    skipped = [r.offset for r in records if r.value is None]
    assert len(handled) + len(dead) + len(skipped) == len(records)


def test_the_specs_register_the_agents_by_name(tmp_path: Path) -> None:
    app = create_app(Settings(state_dir=tmp_path, agents=AGENTS))
    assert {"phoenix.sink", "phoenix.retrain", "phoenix.deployments", "phoenix.feedback"} <= set(
        app.agents
    )
    assert app.agents["phoenix.retrain"].fun.__doc__ == (
        "The retrain consumer (streaming.consumers)."
    )
