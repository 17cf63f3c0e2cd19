"""Sink logic that needs no PostgreSQL: retry classification, backoff bounds, construction, and
isolating refused rows (with a fake writer standing in for PostgreSQL).

Writes, idempotence, outages and refused rows against the real server:
tests/integration/test_prediction_sink.py and tests/integration/test_sink_isolation.py.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix_stream.exceptions import SinkError
from phoenix_stream.storage.database import is_data_error, is_transient
from phoenix_stream.storage.rows import COLUMNS, prediction_records
from phoenix_stream.storage.sink import (
    PredictionSink,
    RowsRefused,
    SinkReport,
    Table,
    isolate_rejected,
)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed mid-operation"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock"),
        asyncpg.exceptions.InterfaceError(
            "cannot call Transaction.__aexit__(): the underlying connection is closed"
        ),
        asyncpg.exceptions.InternalClientError("cannot switch to state 15"),
    ],
)
def test_transient_errors(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        None,
        asyncpg.exceptions.UndefinedTableError("no predictions table"),
        asyncpg.exceptions.DataError("bad value"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
        asyncpg.exceptions.ClientConfigurationError("bad option"),
        asyncpg.exceptions.UnsupportedServerFeatureError("no such feature"),
        SinkError("migration changed"),
        ValueError("x"),
    ],
)
def test_permanent_errors(exc: BaseException | None) -> None:
    assert not is_transient(exc)


def test_sink_checks_backoff_bounds() -> None:
    with pytest.raises(ValueError, match="backoff"):
        PredictionSink("postgresql://x@127.0.0.1:1/db", min_backoff_s=0.0)
    with pytest.raises(ValueError, match="backoff"):
        PredictionSink("postgresql://x@127.0.0.1:1/db", min_backoff_s=2.0, max_backoff_s=1.0)


async def test_sink_before_start_is_not_ready_and_does_not_ping() -> None:
    sink = PredictionSink("postgresql://x@127.0.0.1:1/db")
    assert sink.ready is False
    assert await sink.ping() is False
    assert await sink.write([]) == 0  # nothing to write needs no connection


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.DatetimeFieldOverflowError('timestamp out of range: "1e+300"'),
        asyncpg.exceptions.NumericValueOutOfRangeError("integer out of range"),
        asyncpg.exceptions.InvalidTextRepresentationError("invalid input syntax for type json"),
        asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00"),
        asyncpg.exceptions.CheckViolationError("violates check constraint"),
        asyncpg.exceptions.NotNullViolationError("null value in column"),
        asyncpg.exceptions.ProgramLimitExceededError("index row size exceeds maximum"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
        OverflowError("value out of int32 range"),
        TypeError("expected str, got int"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
    ],
)
def test_data_errors_blame_the_rows(exc: BaseException) -> None:
    assert is_data_error(exc)
    assert not is_transient(exc)  # never retried: the same rows fail the same way


@pytest.mark.parametrize(
    "exc",
    [
        None,
        ConnectionRefusedError(111, "refused"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.InterfaceError("the underlying connection is closed"),
        asyncpg.exceptions.UndefinedTableError("relation does not exist"),
        asyncpg.exceptions.InsufficientPrivilegeError("permission denied"),
        SinkError("cannot open PostgreSQL"),
    ],
)
def test_other_errors_do_not_blame_the_rows(exc: BaseException | None) -> None:
    assert not is_data_error(exc)


class FakeWriter:
    """Stands in for PostgreSQL: refuses any slice holding a bad item, counts its calls."""

    def __init__(self, bad: set[int], stored: set[int] | None = None) -> None:
        self.bad = bad
        self.stored = set() if stored is None else stored
        self.calls = 0

    async def __call__(self, chunk: Sequence[int]) -> int:
        self.calls += 1
        if self.bad.intersection(chunk):
            cause = asyncpg.exceptions.CheckViolationError("violates check constraint")
            raise RowsRefused("refused") from cause
        new = set(chunk) - self.stored
        self.stored |= new
        return len(new)


async def test_isolate_rejected_writes_the_rest_and_names_the_refused() -> None:
    writer = FakeWriter(bad={3, 17, 18, 39})
    written, refused = await isolate_rejected(list(range(40)), writer)
    assert written == 36
    assert writer.stored == set(range(40)) - {3, 17, 18, 39}
    assert [index for index, _ in refused] == [3, 17, 18, 39]
    assert all(isinstance(exc.__cause__, asyncpg.CheckViolationError) for _, exc in refused)


async def test_isolate_rejected_clean_batch_is_one_write() -> None:
    writer = FakeWriter(bad=set(), stored={0, 1})
    assert await isolate_rejected(list(range(10)), writer) == (8, [])  # 0 and 1 stored before
    assert writer.calls == 1
    assert await isolate_rejected([], writer) == (0, [])
    assert writer.calls == 1


async def test_batch_refused_whole_but_not_in_halves_is_all_written() -> None:
    # Rows refused together only (say, a limit on the whole statement): nothing is set aside.
    calls: list[int] = []

    async def write(chunk: Sequence[int]) -> int:
        calls.append(len(chunk))
        if len(chunk) > 4:
            raise RowsRefused("too much at once") from asyncpg.ProgramLimitExceededError("big")
        return len(chunk)

    assert await isolate_rejected(list(range(8)), write) == (8, [])
    assert calls == [8, 4, 4]


async def test_isolate_rejected_lets_other_errors_through() -> None:
    async def write(chunk: Sequence[int]) -> int:
        if len(chunk) < 4:
            raise SinkError("relation does not exist") from asyncpg.UndefinedTableError("x")
        raise RowsRefused("refused") from asyncpg.CheckViolationError("x")

    with pytest.raises(SinkError, match="relation does not exist") as info:
        await isolate_rejected(list(range(8)), write)
    assert not isinstance(info.value, RowsRefused)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=st.integers(min_value=1, max_value=200))
def test_isolate_rejected_finds_exactly_the_bad_in_few_writes(data: Any, size: int) -> None:
    bad = data.draw(st.sets(st.integers(min_value=0, max_value=size - 1), max_size=size))
    writer = FakeWriter(bad=bad)
    written, refused = asyncio.run(isolate_rejected(list(range(size)), writer))
    assert [index for index, _ in refused] == sorted(bad)
    assert written == size - len(bad) and writer.stored == set(range(size)) - bad
    # Each bad item is found on its own path of halvings: about 2 writes per level.
    assert writer.calls <= 1 + 2 * len(bad) * max(1, math.ceil(math.log2(size)))


def good_row(index: int) -> dict[str, Any]:
    """A valid prediction row whose request_id is ``r-<index>``."""
    return {
        "request_id": f"r-{index}",
        "entity_id": "e-1",
        "model": "credit",
        "version": "3",
        "variant": "champion",
        "score": 0.5,
        "label": 1,
        "features": {"age": 31.0},
        "defaults_used": [],
        "degraded": False,
        "source": "kafka",
        "received_at": 1_700_000_000.0,
        "predicted_at": 1_700_000_000.1,
        "latency_ms": 100.0,
    }


class FakeDatabaseSink(PredictionSink):
    """A sink whose one-transaction write is faked: a table of request ids per name.

    A record whose score is above 1 is refused (as a CHECK constraint would); the first
    ``outages`` writes fail as if PostgreSQL were down.
    """

    def __init__(self, outages: int = 0) -> None:
        super().__init__("postgresql://x@127.0.0.1:1/db", min_backoff_s=0.001, max_backoff_s=0.002)
        self.tables: dict[str, set[str]] = {"predictions": set(), "shadow_predictions": set()}
        self.outages = outages
        self.writes = 0

    async def _write_records(self, records: Sequence[tuple[Any, ...]], table: Table) -> int:
        self.writes += 1
        if self.outages:
            self.outages -= 1
            raise SinkError("down") from ConnectionRefusedError(111, "refused")
        score = COLUMNS.index("score")
        if any(record[score] is not None and record[score] > 1 for record in records):
            cause = asyncpg.exceptions.CheckViolationError(
                'new row for relation "predictions" violates check constraint "probability"'
            )
            raise RowsRefused("refused") from cause
        ids = {record[0] for record in records}
        new = ids - self.tables[table]
        self.tables[table] |= new
        return len(new)


async def test_write_isolating_reports_checks_and_refusals_by_row_index() -> None:
    sink = FakeDatabaseSink()
    rows = [good_row(i) for i in range(10)]
    rows[2]["received_at"] = 1e300  # the checks catch it
    rows[5]["score"] = 1.5  # only "PostgreSQL" refuses it
    rows[7]["label"] = 2**31  # the checks catch it
    rows[8]["score"] = 7.0
    rows.append(good_row(0))  # the same request twice in one batch
    report = await sink.write_isolating(rows)
    assert (report.written, report.duplicates) == (6, 1)
    assert [(index, field) for index, _, field in report.rejected] == [
        (2, "received_at"),
        (5, None),
        (7, "label"),
        (8, None),
    ]
    reasons = {index: reason for index, reason, _ in report.rejected}
    assert reasons[2].startswith("received_at: must be epoch seconds")
    assert reasons[5].startswith("PostgreSQL refused the row (23514 CheckViolationError)")
    assert '"probability"' in reasons[8]
    assert sink.tables["predictions"] == {f"r-{i}" for i in (0, 1, 3, 4, 6, 9)}
    again = await sink.write_isolating(rows)
    assert again == SinkReport(0, 7, report.rejected)  # nothing added the second time


async def test_write_isolating_retries_outages_and_never_rejects_for_them() -> None:
    sink = FakeDatabaseSink(outages=3)
    report = await sink.write_isolating([good_row(i) for i in range(5)])
    assert report == SinkReport(5, 0, [])
    assert (sink.retries, sink.writes) == (3, 4)


async def test_write_isolating_targets_the_shadow_table() -> None:
    sink = FakeDatabaseSink()
    shadow = good_row(1) | {"variant": "challenger"}
    assert await sink.write_isolating([shadow], table="shadow_predictions") == SinkReport(1, 0, [])
    assert sink.tables == {"predictions": set(), "shadow_predictions": {"r-1"}}


@pytest.mark.parametrize("table", ["Predictions", "predictions; DROP TABLE predictions", ""])
async def test_only_known_tables_are_written(table: str) -> None:
    sink = FakeDatabaseSink()
    with pytest.raises(ValueError, match="table must be one of"):
        await sink.write_isolating([good_row(1)], table=table)
    with pytest.raises(ValueError, match="table must be one of"):
        await sink.write_until_done([good_row(1)], table=table)
    assert sink.writes == 0


async def test_write_isolating_gives_up_when_told_to_stop() -> None:
    sink = FakeDatabaseSink(outages=10**6)
    stopping = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stopping.set)
    with pytest.raises(SinkError, match="stopping"):
        await asyncio.wait_for(sink.write_isolating([good_row(1)], stop_event=stopping), 10)


async def test_records_from_prediction_records_can_be_written_unchecked() -> None:
    sink = FakeDatabaseSink()
    records = prediction_records([good_row(i) for i in range(4)])
    score = COLUMNS.index("score")
    records[1] = (*records[1][:score], 9.0, *records[1][score + 1 :])
    report = await sink.write_records_isolating(records, table="shadow_predictions")
    assert (report.written, [index for index, _, _ in report.rejected]) == (3, [1])
