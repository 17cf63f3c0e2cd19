"""Requests produced to Kafka come out as predictions, in PostgreSQL, and bad ones as dead letters.

Runs a real worker process against the embedded broker, Redis and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from phoenix_stream.embedded import ServiceAddresses, start_services, stop_services
from phoenix_stream.testing import consume_json as consume
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
    dsn: str, run: str, expected: int, timeout_s: float = 60.0
) -> list[asyncpg.Record]:
    """Prediction rows of this run, once ``expected`` are there (or at the timeout)."""
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            rows: list[asyncpg.Record] = await connection.fetch(
                "SELECT * FROM predictions WHERE request_id LIKE $1 ORDER BY request_id", f"{run}-%"
            )
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.3)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
async def worker(worker_factory: Any) -> WorkerProcess:
    started: WorkerProcess = await worker_factory.start()
    return started


async def test_requests_become_predictions_and_rows(
    worker: WorkerProcess, producer: AIOKafkaProducer, services: ServiceAddresses
) -> None:
    settings = worker.settings
    run = uuid.uuid4().hex[:8]
    sent = [request(i, run) for i in range(300)]
    for item in sent:
        await producer.send(
            settings.topic("requests"), orjson.dumps(item), key=item["entity_id"].encode()
        )
    # The same record delivered twice (a producer retry): one row in PostgreSQL.
    await producer.send(
        settings.topic("requests"), orjson.dumps(sent[0]), key=sent[0]["entity_id"].encode()
    )
    await producer.flush()

    predictions = await consume(settings.kafka_url, settings.topic("predictions"), 301)
    ours = [p for p in predictions if str(p["request_id"]).startswith(run)]
    assert len(ours) == 301
    assert {p["request_id"] for p in ours} == {s["request_id"] for s in sent}
    first = next(p for p in ours if p["request_id"] == f"{run}-1")
    assert first["model"] == "credit-risk" and first["source"] == "kafka"
    assert first["variant"] in ("champion", "challenger")
    assert first["version"] == ("1" if first["variant"] == "champion" else "2")
    assert list(first["features"]) == list(FEATURE_NAMES)  # type: ignore[call-overload]
    assert first["features"]["credit_amount"] == 6.0  # type: ignore[index]
    assert first["defaults_used"] == [] and first["degraded"] is False
    assert 0.0 <= float(first["score"]) <= 1.0  # type: ignore[arg-type]
    assert {p["variant"] for p in ours} == {"champion", "challenger"}

    rows = await rows_for(services.postgres_dsn, run, 300)
    assert len(rows) == 300
    assert len({r["request_id"] for r in rows}) == 300
    row = next(r for r in rows if r["request_id"] == f"{run}-1")
    assert row["score"] == pytest.approx(first["score"])
    await asyncio.sleep(2.0)  # the duplicate had every chance to be written twice
    assert len(await rows_for(services.postgres_dsn, run, 301, timeout_s=0)) == 300


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

    dead = await consume(settings.kafka_url, settings.topic("dead-letters"), 6)
    by_kind = {(d["error_kind"], d["field"]) for d in dead}
    assert by_kind == {
        ("invalid_json", None),
        ("invalid_request", "entity_id"),
        ("invalid_request", "features.credit_amount"),
        ("unknown_model", "model"),
        ("unknown_feature", "features.colour"),
    }
    originals = {base64.b64decode(str(d["original_value"])) for d in dead}
    assert set(bad) <= originals
    in_batch = next(d for d in dead if d["batch_index"] == 1)
    assert orjson.loads(base64.b64decode(str(in_batch["original_value"]))) == batch[1]
    assert all(d["source_topic"] == topic and int(str(d["offset"])) >= 0 for d in dead)

    predictions = await consume(
        settings.kafka_url, settings.topic("predictions"), 10_000, timeout_s=8
    )
    ours = {p["request_id"] for p in predictions if str(p["request_id"]).startswith(run)}
    assert ours == {f"{run}-{i}" for i in [*range(20), 100, 102]}


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
        settings.kafka_url, settings.topic("predictions"), 10_000, timeout_s=8
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
    await asyncio.to_thread(stop_services, services_state_dir, ["postgres"])
    try:
        for i in range(200):
            await producer.send(settings.topic("requests"), orjson.dumps(request(i, run)), key=b"k")
        await producer.flush()
        # Predictions keep flowing while the sink waits for PostgreSQL.
        predictions = await consume(
            settings.kafka_url, settings.topic("predictions"), 10_000, timeout_s=6
        )
        assert (
            len({p["request_id"] for p in predictions if str(p["request_id"]).startswith(run)})
            == 200
        )
    finally:
        await asyncio.to_thread(start_services, services_state_dir, ["postgres"])
    rows = await rows_for(services.postgres_dsn, run, 200)
    assert len(rows) == 200 and len({r["request_id"] for r in rows}) == 200
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
    rows = await rows_for(services.postgres_dsn, run, 1)
    assert [r["request_id"] for r in rows] == [f"{run}-ok"]
    dead = await consume(settings.kafka_url, settings.topic("dead-letters"), 10_000, timeout_s=5)
    mine = {(d["error_kind"], d["field"]): d for d in dead if d["source_topic"] == topic}
    assert set(mine) == {
        ("invalid_json", None),
        ("invalid_prediction", None),
        ("invalid_prediction", "score"),
    }
    bad = mine[("invalid_prediction", "score")]
    assert orjson.loads(base64.b64decode(str(bad["original_value"])))["score"] == "high"
