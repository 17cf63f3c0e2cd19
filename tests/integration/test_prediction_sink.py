"""PredictionSink and migrations against the real embedded PostgreSQL, outages included.

Each test works in a schema of its own (through the connection's search_path), so the
migrations start from nothing and counts are exact.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import pytest

from phoenix_stream.embedded import ServiceAddresses, start_services, stop_services
from phoenix_stream.exceptions import SinkError, ValidationError
from phoenix_stream.storage.migrations import apply_migrations, load_migrations
from phoenix_stream.storage.sink import PredictionSink

log = logging.getLogger(__name__)
_ids = itertools.count()


def make_rows(n: int) -> list[dict[str, Any]]:
    """``n`` prediction rows with fresh request ids."""
    rows = []
    for _ in range(n):
        i = next(_ids)
        rows.append(
            {
                "request_id": f"req-{i}",
                "entity_id": f"e{i % 97}",
                "model": "credit",
                "version": "2" if i % 3 else "1",
                "variant": "challenger" if i % 3 else "champion",
                "score": (i % 100) / 100,
                "label": i % 2,
                "features": {"age": float(i % 90), "income": 1000.0 + i},
                "defaults_used": ["income"] if i % 5 == 0 else [],
                "degraded": i % 7 == 0,
                "source": "kafka",
                "received_at": 1_700_000_000.0 + i,
                "predicted_at": 1_700_000_000.0 + i + 0.004,
                "latency_ms": 4.0,
            }
        )
    return rows


@pytest.fixture
async def conn(services: ServiceAddresses, schema: str) -> AsyncIterator[Any]:
    """A plain connection in ``schema``, to check what the sink wrote."""
    connection = await asyncpg.connect(
        services.postgres_dsn, server_settings={"search_path": schema}
    )
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def postgres_restartable(managed_services: frozenset[str]) -> None:
    """Skip unless this session started PostgreSQL itself (outage tests stop it)."""
    if "postgres" not in managed_services:
        pytest.skip("postgres comes from the environment; this test restarts it")


async def test_migrations_are_idempotent_and_recorded(conn: Any) -> None:
    assert await apply_migrations(conn) == [m.version for m in load_migrations()]
    assert await apply_migrations(conn) == []
    rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    assert (rows[0]["version"], rows[0]["name"]) == (1, "predictions")
    indexes = {
        r["indexname"]
        for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'predictions' "
            "AND schemaname = current_schema()"
        )
    }
    assert {"predictions_pkey", "predictions_model_version_predicted_at_idx"} <= indexes


async def test_concurrent_migrators_apply_once(services: ServiceAddresses, schema: str) -> None:
    conns = [
        await asyncpg.connect(services.postgres_dsn, server_settings={"search_path": schema})
        for _ in range(3)
    ]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        versions = [m.version for m in load_migrations()]
        assert sorted(results, key=len) == [[], [], versions]
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(versions)
    finally:
        for c in conns:
            await c.close()


async def test_edited_migration_is_refused(conn: Any) -> None:
    await apply_migrations(conn)
    await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(SinkError, match="changed after it was applied"):
        await apply_migrations(conn)


async def test_write_1000_rows_in_batches(sink: PredictionSink, conn: Any) -> None:
    rows = make_rows(1000)
    written = [await sink.write(rows[i : i + 250]) for i in range(0, 1000, 250)]
    assert written == [250, 250, 250, 250]
    assert await sink.count_predictions() == 1000
    assert await sink.count_predictions(model="credit") == 1000
    assert await sink.count_predictions(model="other") == 0
    stored = await conn.fetchrow(
        "SELECT * FROM predictions WHERE request_id = $1",
        "req-" + rows[0]["request_id"].split("-")[1],
    )
    first = rows[0]
    assert stored["features"] == (
        f'{{"age": {first["features"]["age"]}, "income": {first["features"]["income"]}}}'
    )
    assert list(stored["defaults_used"]) == first["defaults_used"]
    assert stored["received_at"] == datetime.fromtimestamp(first["received_at"], UTC)
    assert stored["predicted_at"] == datetime.fromtimestamp(first["predicted_at"], UTC)
    assert (stored["score"], stored["label"], stored["degraded"]) == (
        first["score"],
        first["label"],
        first["degraded"],
    )
    assert stored["written_at"] is not None


async def test_same_batch_twice_stores_each_request_once(sink: PredictionSink, conn: Any) -> None:
    rows = make_rows(300)
    assert await sink.write(rows) == 300
    assert await sink.write(rows) == 0
    overlap = rows[200:] + make_rows(50)
    assert await sink.write(overlap + overlap[:10]) == 50  # duplicates inside a batch too
    assert await conn.fetchval("SELECT count(*) FROM predictions") == 350
    assert await conn.fetchval("SELECT count(DISTINCT request_id) FROM predictions") == 350


async def test_bad_row_writes_nothing_or_is_set_aside(sink: PredictionSink) -> None:
    rows = make_rows(3)
    rows[1]["score"] = "high"
    with pytest.raises(ValidationError, match=r"rows\[1\]\.score"):
        await sink.write(rows)
    assert await sink.count_predictions() == 0
    rejects: list[tuple[int, ValidationError]] = []
    assert await sink.write_until_done(rows, rejects=rejects) == 2
    assert [(i, e.field) for i, e in rejects] == [(1, "rows[1].score")]
    assert await sink.count_predictions() == 2


@dataclass
class Outage:
    """Events of a PostgreSQL outage run by a thread: set ``go`` to begin it."""

    go: threading.Event
    down: threading.Event  # set once PostgreSQL is stopped
    up: threading.Event  # set once it is running again


@pytest.fixture
def postgres_outage(services_state_dir: Path, postgres_restartable: None) -> Iterator[Outage]:
    """A thread that, once told, stops PostgreSQL and starts it again 1.5 s later.

    PostgreSQL is running again when the test ends, whatever happened.
    """
    outage = Outage(threading.Event(), threading.Event(), threading.Event())

    def run() -> None:
        if not outage.go.wait(timeout=60):
            return
        stop_services(services_state_dir, ["postgres"])
        outage.down.set()
        time.sleep(1.5)
        start_services(services_state_dir, ["postgres"])
        outage.up.set()

    thread = threading.Thread(target=run, name="postgres-outage", daemon=True)
    thread.start()
    try:
        yield outage
    finally:
        outage.go.set()
        thread.join(timeout=120)
        start_services(services_state_dir, ["postgres"])  # no-op when already running


async def test_outage_mid_way_loses_and_duplicates_nothing(
    services: ServiceAddresses, schema: str, sink: PredictionSink, postgres_outage: Outage
) -> None:
    # Write back to back while PostgreSQL is stopped under us (so a write is in flight
    # when it goes), then started again; carry on a few batches after it is back.
    sent: list[str] = []
    inserted = 0
    assert await sink.write_until_done(make_rows(10)) == 10  # open and migrate first
    postgres_outage.go.set()
    after_up = 0
    for _ in range(2000):  # bound: ~3 s of outage at a few ms per batch, with margin
        batch = make_rows(100)
        sent.extend(row["request_id"] for row in batch)
        inserted += await asyncio.wait_for(sink.write_until_done(batch), timeout=60)
        if postgres_outage.up.is_set():
            after_up += 1
            if after_up == 5:
                break
    assert after_up == 5
    assert sink.retries > 0  # the outage was really hit
    # A commit whose acknowledgement was lost is retried and then skips those rows, so the
    # inserted count may be short of what was sent; the stored ids below are the truth.
    assert inserted <= len(sent)
    assert await sink.count_predictions() == len(sent) + 10
    check = await asyncpg.connect(services.postgres_dsn, server_settings={"search_path": schema})
    try:
        stored = await check.fetch("SELECT request_id FROM predictions")
    finally:
        await check.close()
    stored_ids = [r["request_id"] for r in stored]
    assert len(stored_ids) == len(set(stored_ids))  # no duplicate, even without the key
    assert set(sent) <= set(stored_ids)  # no loss


async def test_start_while_postgres_is_down_then_write_until_done(
    services: ServiceAddresses,
    schema: str,
    postgres_outage: Outage,
) -> None:
    postgres_outage.go.set()
    assert await asyncio.to_thread(postgres_outage.down.wait, 60)
    late = PredictionSink(
        services.postgres_dsn,
        min_backoff_s=0.05,
        max_backoff_s=0.5,
        server_settings={"search_path": schema},
    )
    await late.start()  # must not raise or block while PostgreSQL is down
    try:
        assert late.ready is False
        assert await late.ping() is False
        with pytest.raises(SinkError):
            await late.write(make_rows(1))
        assert await asyncio.wait_for(late.write_until_done(make_rows(100)), timeout=60) == 100
        assert late.ready is True
        assert await late.count_predictions() == 100
    finally:
        await late.stop()


async def test_write_until_done_gives_up_when_stopping(
    services: ServiceAddresses,
    schema: str,
    postgres_outage: Outage,
) -> None:
    postgres_outage.go.set()
    assert await asyncio.to_thread(postgres_outage.down.wait, 60)
    stopping = asyncio.Event()
    sink = PredictionSink(services.postgres_dsn, server_settings={"search_path": schema})
    await sink.start()
    try:
        asyncio.get_running_loop().call_later(0.3, stopping.set)
        with pytest.raises(SinkError, match="stopping"):
            await asyncio.wait_for(sink.write_until_done(make_rows(5), stopping), timeout=30)
    finally:
        await sink.stop()
