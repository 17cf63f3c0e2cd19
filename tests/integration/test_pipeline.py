"""Requests produced to Kafka come out as predictions, in PostgreSQL, and bad ones as dead letters.

Runs a real worker process against the embedded broker, Redis and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from phoenix_stream.embedded import ServiceAddresses, start_services, stop_services
from phoenix_stream.testing import consume_json as consume
from phoenix_stream.testing import (
    covers,
    metric_reaches,
    metric_value,
    prediction_rows,
    read_through_sentinels,
)
from phoenix_stream.tools.worker_process import WorkerProcess
from phoenix_stream.training.datagen import FEATURE_NAMES


def request(i: int, run: str, entity: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": f"{run}-{i}",
        "entity_id": entity or f"c{i % 2000:06d}",
        "features": {"credit_amount": 5.0 + i % 7, "duration_months": 24.0, "interest_rate": 7.5},
        "sent_at": time.time(),
        **extra,
    }


async def rows_for(
    dsn: str, run: str, until: Callable[[list[asyncpg.Record]], bool], timeout_s: float = 60.0
) -> list[asyncpg.Record]:
    """Prediction rows of this run, once ``until(rows)`` holds (or at the timeout)."""
    return await prediction_rows(dsn, f"{run}-", until=until, timeout_s=timeout_s)


def holds(*request_ids: str) -> Callable[[list[asyncpg.Record]], bool]:
    """A ``rows_for`` condition: a row is stored for each of ``request_ids``."""
    wanted = set(request_ids)
    return lambda rows: wanted <= {r["request_id"] for r in rows}


async def log_shows(worker: WorkerProcess, text: bytes, timeout_s: float = 30.0) -> bool:
    """True once the worker's log holds ``text``; False after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while text not in worker.log_path.read_bytes():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


@pytest.fixture(scope="module")
async def worker(worker_factory: Any) -> WorkerProcess:
    started: WorkerProcess = await worker_factory.start()
    return started


@pytest.mark.brokers("tansu", "kafka")
async def test_requests_become_predictions_and_rows(
    worker: WorkerProcess, producer: AIOKafkaProducer, services: ServiceAddresses
) -> None:
    settings = worker.settings
    run = uuid.uuid4().hex[:8]
    sent = [request(i, run) for i in range(300)]
    ids = {s["request_id"] for s in sent}
    skipped_before = await metric_value(worker.base_url, "phoenix_sink_duplicates_total")
    for item in sent:
        await producer.send(
            settings.topic("requests"), orjson.dumps(item), key=item["entity_id"].encode()
        )
    # The same record delivered twice (a producer retry): predicted twice, stored once.
    twice = sent[0]["request_id"]
    await producer.send(
        settings.topic("requests"), orjson.dumps(sent[0]), key=sent[0]["entity_id"].encode()
    )
    await producer.flush()

    def both_copies(records: list[dict[str, object]]) -> bool:
        return covers(ids)(records) and sum(r["request_id"] == twice for r in records) >= 2

    predictions = await consume(
        settings.kafka_url, settings.topic("predictions"), until=both_copies
    )
    ours = [p for p in predictions if str(p["request_id"]).startswith(f"{run}-")]
    per_request = Counter(str(p["request_id"]) for p in ours)
    assert set(per_request) == ids
    assert per_request[twice] == 2  # the duplicate delivery did reach inference
    first = next(p for p in ours if p["request_id"] == f"{run}-1")
    assert first["model"] == "credit-risk" and first["source"] == "kafka"
    assert first["variant"] in ("champion", "challenger")
    assert first["version"] == ("1" if first["variant"] == "champion" else "2")
    assert list(first["features"]) == list(FEATURE_NAMES)  # type: ignore[call-overload]
    assert first["features"]["credit_amount"] == 6.0  # type: ignore[index]
    assert first["defaults_used"] == [] and first["degraded"] is False
    assert 0.0 <= float(first["score"]) <= 1.0  # type: ignore[arg-type]
    assert {p["variant"] for p in ours} == {"champion", "challenger"}

    # A sentinel on the duplicate's key follows both copies through the same requests and
    # predictions partitions, and the sink takes a partition in order: once the sentinel's
    # row is stored, the sink has handled both copies.
    sentinel = request(300, run, entity=sent[0]["entity_id"])
    await producer.send(
        settings.topic("requests"), orjson.dumps(sentinel), key=sentinel["entity_id"].encode()
    )
    await producer.flush()
    rows = await rows_for(services.postgres_dsn, run, holds(*ids, sentinel["request_id"]))
    assert {r["request_id"] for r in rows} == {*ids, sentinel["request_id"]}
    row = next(r for r in rows if r["request_id"] == f"{run}-1")
    assert row["score"] == pytest.approx(first["score"])
    # The second copy reached the sink and was skipped as already stored (the primary key
    # alone would keep one row, but a failed insert would dead-letter or stall the batch).
    skipped = await metric_reaches(
        worker.base_url, "phoenix_sink_duplicates_total", skipped_before + 1
    )
    assert skipped >= skipped_before + 1


@pytest.mark.brokers("tansu", "kafka")
async def test_bad_records_are_dead_lettered_and_good_ones_flow(
    worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    settings = worker.settings
    run = uuid.uuid4().hex[:8]
    bad = [
        b'{"request_id": "x1", "entity_id": ',
        b'{"request_id": "x2"}',
        b'{"request_id": "x3", "entity_id": "c000001", "features": {"credit_amount": NaN}}',
        b'{"request_id": "x4", "entity_id": "c000001", "model": "no-such-model"}',
        b'{"request_id": "x5", "entity_id": "c000001", "features": {"colour": 1}}',
    ]
    topic = settings.topic("requests")
    for i in range(20):
        await producer.send(topic, orjson.dumps(request(i, run)), key=b"k")
        if i < len(bad):
            await producer.send(topic, bad[i], key=f"bad{i}".encode())
    # A batch record with one bad item among good ones.
    batch = [request(100, run), {"request_id": f"{run}-101"}, request(102, run)]
    await producer.send(topic, orjson.dumps(batch), key=b"batch")
    await producer.flush()

    good = {f"{run}-{i}" for i in [*range(20), 100, 102]}

    def original(letter: dict[str, object]) -> bytes:
        return base64.b64decode(str(letter["original_value"]))

    def all_rejected(letters: list[dict[str, object]]) -> bool:
        return set(bad) <= {original(d) for d in letters} and any(
            d["batch_index"] == 1 for d in letters
        )

    # Wait for an output of every record, then read everything through fresh sentinels:
    # a record that also gave an unexpected output has given it by then.
    await consume(settings.kafka_url, settings.topic("dead-letters"), until=all_rejected)
    await consume(settings.kafka_url, settings.topic("predictions"), until=covers(good))
    outputs = await read_through_sentinels(producer, settings, ("dead-letters", "predictions"))

    dead = [d for d in outputs["dead-letters"] if d["source_topic"] == topic]
    assert len(dead) == 6  # one per bad record or bad batch item, none for the good ones
    by_kind = {(d["error_kind"], d["field"]) for d in dead}
    assert by_kind == {
        ("invalid_json", None),
        ("invalid_request", "entity_id"),
        ("invalid_request", "features.credit_amount"),
        ("unknown_model", "model"),
        ("unknown_feature", "features.colour"),
    }
    [in_batch] = [d for d in dead if d["batch_index"] is not None]
    assert {original(d) for d in dead if d is not in_batch} == set(bad)
    assert in_batch["batch_index"] == 1
    assert orjson.loads(original(in_batch)) == batch[1]
    assert all(d["source_topic"] == topic and int(str(d["offset"])) >= 0 for d in dead)

    ours = [
        str(p["request_id"]) for p in outputs["predictions"] if str(p["request_id"]).startswith(run)
    ]
    assert sorted(ours) == sorted(good)  # each good request once, the bad batch item not at all


async def test_unknown_entity_gets_defaults_flagged(
    worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    settings = worker.settings
    run = uuid.uuid4().hex[:8]
    await producer.send(
        settings.topic("requests"), orjson.dumps(request(1, run, entity="never-seeded")), key=b"n"
    )
    await producer.flush()
    predictions = await consume(
        settings.kafka_url, settings.topic("predictions"), until=covers([f"{run}-1"])
    )
    [ours] = [p for p in predictions if p["request_id"] == f"{run}-1"]
    assert ours["defaults_used"] == [
        "age",
        "annual_income",
        "employment_years",
        "existing_debt",
        "late_payments_24m",
        "open_credit_lines",
        "savings",
    ]
    assert ours["degraded"] is False


async def test_postgres_outage_loses_and_duplicates_nothing(
    worker: WorkerProcess,
    producer: AIOKafkaProducer,
    services: ServiceAddresses,
    services_state_dir: Path,
    managed_services: frozenset[str],
) -> None:
    if "postgres" not in managed_services:
        pytest.skip("PostgreSQL is external (PHOENIX_POSTGRES_DSN): cannot stop it here")
    settings = worker.settings
    run = uuid.uuid4().hex[:8]
    ids = {f"{run}-{i}" for i in range(200)}
    await asyncio.to_thread(stop_services, services_state_dir, ["postgres"])
    try:
        for i in range(200):
            await producer.send(settings.topic("requests"), orjson.dumps(request(i, run)), key=b"k")
        await producer.flush()
        # Predictions keep flowing while the sink waits for PostgreSQL.
        predictions = await consume(
            settings.kafka_url, settings.topic("predictions"), until=covers(ids)
        )
        assert ids <= {p["request_id"] for p in predictions}
        # The sink did meet the outage (it logs each failed write) before PostgreSQL returns.
        assert await log_shows(worker, b"predictions failed"), worker.log_tail()
    finally:
        await asyncio.to_thread(start_services, services_state_dir, ["postgres"])
    rows = await rows_for(services.postgres_dsn, run, holds(*ids))
    assert {r["request_id"] for r in rows} == ids
    assert worker.process is not None and worker.process.poll() is None


async def test_sink_survives_bad_prediction_records(
    worker: WorkerProcess, producer: AIOKafkaProducer, services: ServiceAddresses
) -> None:
    settings = worker.settings
    run = uuid.uuid4().hex[:8]
    topic = settings.topic("predictions")
    good = {
        "request_id": f"{run}-ok",
        "entity_id": "e",
        "model": "m",
        "version": "1",
        "variant": "champion",
        "score": 0.5,
        "label": 1,
        "features": {},
        "defaults_used": [],
        "degraded": False,
        "source": "kafka",
        "received_at": 1.0,
        "predicted_at": 1.1,
        "latency_ms": 100.0,
        "sent_at": None,
    }
    await producer.send(topic, b"not json at all", key=b"e")
    await producer.send(topic, b"[1, 2]", key=b"e")
    await producer.send(
        topic, orjson.dumps({**good, "request_id": f"{run}-bad", "score": "high"}), key=b"e"
    )
    await producer.send(topic, orjson.dumps(good), key=b"e")
    await producer.flush()
    # The bad records share the good one's key, so its partition: the sink took them first.
    rows = await rows_for(services.postgres_dsn, run, holds(f"{run}-ok"))
    assert [r["request_id"] for r in rows] == [f"{run}-ok"]
    kinds = {("invalid_json", None), ("invalid_prediction", None), ("invalid_prediction", "score")}

    def from_sink(letters: list[dict[str, Any]]) -> dict[tuple[Any, Any], dict[str, Any]]:
        return {(d["error_kind"], d["field"]): d for d in letters if d["source_topic"] == topic}

    dead = await consume(
        settings.kafka_url,
        settings.topic("dead-letters"),
        until=lambda letters: kinds <= set(from_sink(letters)),
    )
    mine = from_sink(dead)
    assert set(mine) == kinds
    bad = mine[("invalid_prediction", "score")]
    assert orjson.loads(base64.b64decode(str(bad["original_value"])))["score"] == "high"
