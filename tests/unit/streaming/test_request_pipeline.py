"""The batch handler with a stand-in predictor and emitter: decoding, chunking, outputs.

The real predictor, Redis, ONNX and Kafka run it in tests/integration/test_pipeline.py.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Sequence

import orjson

from phoenix_stream import metrics
from phoenix_stream.messages.dead_letters import DeadLetters
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.messages.requests import ParsedRequest
from phoenix_stream.serving.predictor import Outcome, Rejection, Scored
from phoenix_stream.streaming.request_pipeline import RequestPipeline, Topics, end_to_end_starts

TOPICS = Topics("predictions", "shadow", "dead")


class Predictor:
    """Serves every request except entity "unknown"; logs each call's size and order."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def predict(
        self, requests: Sequence[ParsedRequest], *, source: str, received_at: float
    ) -> Outcome:
        self.log.append(f"predict {len(requests)}")
        outcome = Outcome()
        for r in requests:
            if r.entity_id == "unknown":
                outcome.rejected.append(
                    Rejection(r, "unknown_entity", "no such entity", "entity_id")
                )
                continue
            outcome.served.append(
                Scored(r.request_id, r.entity_id, r.model, "1", "champion", 0.5, 1, {}, [], False,
                       source, received_at, received_at, 0.0, r.sent_at)
            )  # fmt: skip
            outcome.served_for.append(r)
        return outcome


class Emitter:
    def __init__(self) -> None:
        self.calls: list[list[OutRecord]] = []

    async def emit(self, records: Sequence[OutRecord]) -> None:
        self.calls.append(list(records))


def pipeline(log: list[str], emitter: Emitter, chunk: int = 1000) -> RequestPipeline:
    return RequestPipeline(
        Predictor(log),  # type: ignore[arg-type]
        emitter,  # type: ignore[arg-type]
        TOPICS,
        DeadLetters("dead", 4096),
        default_model=lambda: "m",
        max_record_bytes=1_048_576,
        max_batch_requests=5000,
        chunk_requests=chunk,
    )


def request(i: int, entity: str = "c1") -> dict[str, object]:
    return {"request_id": f"r{i}", "entity_id": entity}


def record(offset: int, value: object, key: bytes = b"k") -> InRecord:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return InRecord("requests", 0, offset, key, raw)


async def test_outputs_of_a_mixed_group_are_emitted_together() -> None:
    emitter = Emitter()
    records = [
        record(0, request(0)),
        record(1, b'{"request_id": "x", "entity_id": '),
        record(2, [request(1), {"request_id": "r2"}, request(3, "unknown")]),
    ]
    report = await pipeline([], emitter).process(records)
    assert len(emitter.calls) == 1
    out = emitter.calls[0]
    served = [orjson.loads(o.value)["request_id"] for o in out if o.topic == "predictions"]
    assert served == ["r0", "r1"]
    dead = {
        orjson.loads(o.value)["offset"]: orjson.loads(o.value) for o in out if o.topic == "dead"
    }
    assert len([o for o in out if o.topic == "dead"]) == 3
    assert dead[1]["error_kind"] == "invalid_json"
    kinds = sorted(
        (d["error_kind"], d["batch_index"], d["field"])
        for o in out
        if o.topic == "dead" and (d := orjson.loads(o.value))["offset"] == 2
    )
    assert kinds == [("invalid_request", 1, "entity_id"), ("unknown_entity", 2, "entity_id")]
    item = next(
        orjson.loads(o.value) for o in out if o.topic == "dead" and b'"unknown_entity"' in o.value
    )
    assert orjson.loads(base64.b64decode(item["original_value"])) == request(3, "unknown")
    assert (report.records, report.requests, report.predictions, report.dead_letters) == (
        3,
        3,
        2,
        3,
    )


async def test_large_batches_are_scored_in_chunks_with_the_loop_free_between_them() -> None:
    log: list[str] = []
    emitter = Emitter()

    async def ticker() -> None:
        while True:
            log.append("tick")
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        # One record of 2,500 requests and one of 500: chunks cut inside a record too.
        records = [
            record(0, [request(j) for j in range(2500)]),
            record(1, [request(2500 + j) for j in range(500)]),
        ]
        await pipeline(log, emitter, chunk=1000).process(records)
    finally:
        task.cancel()
    calls = [entry for entry in log if entry != "tick"]
    assert calls == ["predict 1000", "predict 1000", "predict 1000"]
    # Another task ran between every two chunks: the loop was never held for the whole batch.
    positions = [i for i, entry in enumerate(log) if entry != "tick"]
    assert all("tick" in log[a:b] for a, b in itertools.pairwise(positions))
    assert sum(1 for o in emitter.calls[0] if o.topic == "predictions") == 3000


def test_groups_bound_the_work_of_one_call_in_requests_not_records() -> None:
    handler = pipeline([], Emitter(), chunk=1000)
    singles = [record(i, request(i)) for i in range(500)]
    assert [len(g) for g in handler.groups(singles)] == [500]
    big = [record(i, [request(j) for j in range(1000)]) for i in range(5)]
    assert [len(g) for g in handler.groups(big)] == [1, 1, 1, 1, 1]
    halves = [record(i, [request(j) for j in range(500)]) for i in range(4)]
    assert [len(g) for g in handler.groups(halves)] == [2, 2]
    mixed = [*singles[:10], *big[:2], *singles[10:20]]
    groups = list(handler.groups(mixed))
    assert sum(len(g) for g in groups) == len(mixed)
    assert [r for g in groups for r in g] == mixed  # order kept, nothing lost
    assert list(handler.groups([])) == []


def end_to_end_count(source: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "phoenix_end_to_end_latency_seconds_count", {"source": source}
    )
    return value or 0.0


def end_to_end_bucket(source: str, le: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "phoenix_end_to_end_latency_seconds_bucket", {"source": source, "le": le}
    )
    return value or 0.0


async def test_end_to_end_latency_counts_every_served_prediction_from_its_sent_at() -> None:
    now = 1_800_000_000.0
    clock = iter([now, now + 0.5])  # received, then delivered half a second later
    p = pipeline([], Emitter())
    p._clock = lambda: next(clock)
    before = end_to_end_count("kafka")
    below_a_quarter = end_to_end_bucket("kafka", "0.25")
    below_one = end_to_end_bucket("kafka", "1.0")
    sent = [
        {**request(0), "sent_at": now - 0.1},  # 0.6 s end to end
        {**request(1), "sent_at": now + 0.2},  # after the receipt (a clock ahead): from it
        request(2),  # no sent_at: from the receipt, 0.5 s
        request(3, "unknown"),  # not served: not counted
    ]
    await p.process([record(i, r) for i, r in enumerate(sent)])
    assert end_to_end_count("kafka") - before == 3
    assert end_to_end_bucket("kafka", "0.25") - below_a_quarter == 0
    assert end_to_end_bucket("kafka", "1.0") - below_one == 3


def test_starts_trust_a_sent_at_only_before_the_receipt() -> None:
    def scored(sent_at: float | None) -> Scored:
        return Scored("r", "e", "m", "1", "champion", 0.5, 1, {}, [], False,
                      "kafka", 10.0, 10.1, 100.0, sent_at)  # fmt: skip

    outcome = Outcome(served=[scored(9.0), scored(11.0), scored(None)])
    assert end_to_end_starts(outcome) == [9.0, 10.0, 10.0]
