"""Rows PostgreSQL refuses are set aside, the rest written once; shadow predictions stored.

Against the real embedded PostgreSQL, each test in a schema of its own (search_path), as
in test_prediction_sink.py. What the checks of storage/rows.py let through must be stored;
what only PostgreSQL refuses (a planted CHECK constraint, or records written unchecked
through ``write_records_isolating``) must be isolated with PostgreSQL's reason.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import pytest

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.storage.rows import (
    COLUMNS,
    INT4_MAX,
    INT4_MIN,
    MAX_FEATURES,
    MAX_TEXT_CHARS,
    TIME_MAX_S,
    TIME_MIN_S,
    prediction_records,
)
from phoenix_stream.storage.sink import PredictionSink, SinkReport


def make_row(tag: str, index: int, **changes: Any) -> dict[str, Any]:
    """A valid prediction row with request_id ``<tag>-<index>``, with ``changes`` applied."""
    row: dict[str, Any] = {
        "request_id": f"{tag}-{index}",
        "entity_id": f"e{index}",
        "model": "credit",
        "version": "2",
        "variant": "champion",
        "score": 0.25,
        "label": index % 2,
        "features": {"age": 40.0, "income": 1000.0 + index},
        "defaults_used": [],
        "degraded": False,
        "source": "kafka",
        "received_at": 1_700_000_000.0 + index,
        "predicted_at": 1_700_000_000.0 + index + 0.004,
        "latency_ms": 4.0,
    }
    row.update(changes)
    return row


def replaced(record: tuple[Any, ...], **values: Any) -> tuple[Any, ...]:
    """``record`` (a COPY record, fields in COLUMNS order) with some fields replaced."""
    return tuple(values.get(name, value) for name, value in zip(COLUMNS, record, strict=True))


@pytest.fixture
async def conn(services: ServiceAddresses, schema: str) -> AsyncIterator[Any]:
    """A plain connection in ``schema``, to plant constraints and check what was written."""
    connection = await asyncpg.connect(
        services.postgres_dsn, server_settings={"search_path": schema}
    )
    try:
        yield connection
    finally:
        await connection.close()


async def stored_ids(conn: Any, table: str = "predictions") -> list[str]:
    """Request ids stored in ``table`` (one of the sink's two), sorted."""
    assert table in ("predictions", "shadow_predictions")
    rows = await conn.fetch(f"SELECT request_id FROM {table} ORDER BY request_id")  # noqa: S608
    return [row["request_id"] for row in rows]


async def test_refused_rows_are_set_aside_and_the_rest_written_once(
    sink: PredictionSink, conn: Any
) -> None:
    # Scores are probabilities; a CHECK planted here makes PostgreSQL itself refuse the
    # ones above 1, which the sink's checks let through.
    await conn.execute(
        "ALTER TABLE predictions ADD CONSTRAINT score_is_probability CHECK (score <= 1)"
    )
    rows = [make_row("a", i) for i in range(40)]
    for index in (3, 17, 18, 39):
        rows[index]["score"] = 1.5
    rows[5]["received_at"] = 1e300  # the user's report: both crashed the sink agent
    rows[22]["label"] = 2**31
    good = sorted(
        row["request_id"] for i, row in enumerate(rows) if i not in {3, 5, 17, 18, 22, 39}
    )

    report = await sink.write_isolating(rows)

    assert (report.written, report.duplicates) == (34, 0)
    assert [(index, field) for index, _, field in report.rejected] == [
        (3, None),
        (5, "received_at"),
        (17, None),
        (18, None),
        (22, "label"),
        (39, None),
    ]
    reasons = {index: reason for index, reason, _ in report.rejected}
    for index in (3, 17, 18, 39):
        assert reasons[index].startswith("PostgreSQL refused the row (23514 CheckViolationError)")
        assert '"score_is_probability"' in reasons[index]
    assert reasons[22].startswith("label: must fit the integer column")
    assert await stored_ids(conn) == good
    assert sink.retries == 0  # a refusal is never retried as if PostgreSQL were down

    # Rewritten (a redelivery): nothing added, the same rows refused. PostgreSQL's DETAIL
    # shows the failing row, written_at included, so reasons are compared by their start.
    again = await sink.write_isolating(rows)
    assert (again.written, again.duplicates) == (0, 34)
    assert [(i, reason[:60], field) for i, reason, field in again.rejected] == [
        (i, reason[:60], field) for i, reason, field in report.rejected
    ]
    assert await stored_ids(conn) == good


async def test_unchecked_records_postgres_refuses_are_isolated_with_its_reason(
    sink: PredictionSink, conn: Any
) -> None:
    # Past the checks, each of these fails the whole COPY + INSERT in its own way.
    records = prediction_records([make_row("b", i) for i in range(24)])
    draw = random.Random(7)  # random, so compression cannot shrink it under the limit
    cjk = "".join(chr(draw.randrange(0x4E00, 0x9FFF)) for _ in range(4000))
    refused = {
        2: replaced(records[2], received_at=1e300),  # to_timestamp(): 22008
        5: replaced(records[5], predicted_at=math.nan),  # to_timestamp(): 22008
        9: replaced(records[9], entity_id="e\x00"),  # text cannot hold NUL: 22021
        11: replaced(records[11], features='{"a\\u0000": 1}'),  # jsonb: 22P05
        12: replaced(records[12], features="not json"),  # jsonb: 22P02
        16: replaced(records[16], request_id=cjk),  # primary key entry too large: 54000
        23: replaced(records[23], label=2**31),  # the driver cannot encode it as int4
    }
    for index, record in refused.items():
        records[index] = record

    report = await sink.write_records_isolating(records)

    assert (report.written, report.duplicates) == (17, 0)
    assert [index for index, _, _ in report.rejected] == sorted(refused)
    reasons = {index: reason for index, reason, _ in report.rejected}
    assert reasons[2].startswith("PostgreSQL refused the row (22008 DatetimeFieldOverflowError)")
    assert "timestamp out of range" in reasons[2]
    assert reasons[5].startswith("PostgreSQL refused the row (22008")
    assert reasons[9].startswith("PostgreSQL refused the row (22021")
    assert reasons[11].startswith("PostgreSQL refused the row (22P05")
    assert reasons[12].startswith("PostgreSQL refused the row (22P02")
    assert reasons[16].startswith("PostgreSQL refused the row (54000")
    assert reasons[23].startswith("the driver cannot encode the row (OverflowError)")
    assert all(len(reason) <= 500 for reason in reasons.values())
    expected = sorted(f"b-{i}" for i in range(24) if i not in refused)
    assert await stored_ids(conn) == expected
    assert sink.retries == 0

    again = await sink.write_records_isolating(records)
    assert (again.written, again.duplicates, again.rejected) == (0, 17, report.rejected)
    assert await stored_ids(conn) == expected


async def test_values_at_the_limits_of_the_checks_are_stored_and_read_back(
    sink: PredictionSink, conn: Any
) -> None:
    # Everything the checks accept, PostgreSQL must take and asyncpg must read back. Wide
    # text: random 4-byte characters (1024 UTF-8 bytes), which compression cannot shrink
    # under btree's entry limit the way a repeated character would be.
    draw = random.Random(11)
    wide = "".join(chr(draw.randrange(0x20000, 0x2A6DF)) for _ in range(MAX_TEXT_CHARS))
    rows = [
        make_row("c", 0, received_at=TIME_MIN_S, predicted_at=math.nextafter(TIME_MAX_S, 0.0)),
        make_row("c", 1, label=INT4_MIN, score=-1e308, latency_ms=1e308),
        make_row("c", 2, label=INT4_MAX, entity_id="", variant="", source="héllo"),
        make_row(wide[:-2], 3, model=wide, version=wide, entity_id=wide),
        make_row("c", 4, features={wide[:-4] + f"{i:04d}": float(i) for i in range(MAX_FEATURES)}),
        make_row("c", 5, defaults_used=[wide] * MAX_FEATURES, features={"a": math.inf}),
        make_row("c", 6, **{key: None for key in COLUMNS if key != "request_id"}),
    ]
    report = await sink.write_isolating(rows)
    assert report == SinkReport(len(rows), 0, [])
    stored = {row["request_id"]: row for row in await conn.fetch("SELECT * FROM predictions")}
    assert len(stored) == len(rows)
    assert stored["c-0"]["predicted_at"].year == 9999
    assert stored["c-1"]["label"] == INT4_MIN
    assert stored["c-5"]["features"] == '{"a": null}'  # non-finite features become null


async def test_shadow_predictions_are_stored_apart_once_per_request(
    sink: PredictionSink, conn: Any
) -> None:
    served = [make_row("d", i) for i in range(3)]
    shadow = [make_row("d", i, variant="challenger", version="3", score=0.9) for i in range(3)]
    shadow.append(make_row("d", 0, variant="challenger", version="3", score=0.1))  # repeated

    assert await sink.write_isolating(served) == SinkReport(3, 0, [])
    assert await sink.write_isolating(shadow, table="shadow_predictions") == SinkReport(3, 1, [])
    assert await sink.write_isolating(shadow, table="shadow_predictions") == SinkReport(0, 4, [])

    assert await sink.count_predictions() == 3
    assert await sink.count_predictions(table="shadow_predictions") == 3
    assert await sink.count_predictions("credit", table="shadow_predictions") == 3
    pairs = await conn.fetch(
        "SELECT p.variant AS served, s.variant AS shadow, s.version, s.score "
        "FROM predictions p JOIN shadow_predictions s USING (request_id) ORDER BY request_id"
    )
    assert [tuple(pair) for pair in pairs] == [("champion", "challenger", "3", 0.9)] * 3


async def test_shadow_table_has_the_columns_and_key_of_predictions(
    sink: PredictionSink, conn: Any
) -> None:
    columns = """
        SELECT column_name, data_type, is_nullable, column_default
        FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position
    """
    served = [tuple(row) for row in await conn.fetch(columns, "predictions")]
    assert [tuple(row) for row in await conn.fetch(columns, "shadow_predictions")] == served
    assert [name for name, *_ in served][: len(COLUMNS)] == list(COLUMNS)
    key = await conn.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'shadow_predictions'::regclass AND contype = 'p'"
    )
    assert key == "PRIMARY KEY (request_id)"
