"""Drift reports on the real embedded PostgreSQL: stored once, read back newest first.

Each test runs ``DriftStore`` on a started ``PredictionSink`` (the pool and migrations the
store shares) confined to a fresh schema of its own, so counts are exact.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from phoenix_stream.drift.report import DriftReport, FeatureDrift
from phoenix_stream.exceptions import SinkError
from phoenix_stream.storage.database import is_transient
from phoenix_stream.storage.drift import DriftStore
from phoenix_stream.storage.sink import PredictionSink
from phoenix_stream.tools.worker_process import free_port

RULE = {
    "alpha": 0.05,
    "correction": "bonferroni",
    "effect_floor": 0.1,
    "min_window": 200,
    "persistence": 2,
    "bins": 50,
}
START = 1_700_000_000.0  # seconds since epoch
WINDOW_S = 60.0


def report(window: int, version: str = "v1", model: str = "credit", **changes: Any) -> DriftReport:
    """The report of the ``window``-th window after START; ``changes`` replace fields."""
    start = START + window * WINDOW_S
    base = DriftReport(
        model=model,
        version=version,
        window_start=start,
        window_end=start + WINDOW_S,
        n=1000 + window,
        features={
            "income": FeatureDrift(0.03, 0.41, 0.03, False),
            "age": FeatureDrift(0.21, 1.5e-30, 0.21, True),
            "__score__": FeatureDrift(0.125, 5e-324, 0.5, True),
        },
        verdict="drift",
        consecutive=2,
        alarm=True,
        trigger_id=f"{model}:{version}:{int(start * 1000)}",
        rule=RULE,
    )
    return replace(base, **changes)


@pytest.fixture
def store(sink: PredictionSink) -> DriftStore:
    return DriftStore(sink.database)


async def stored_rows(sink: PredictionSink) -> list[tuple[str, str, float]]:
    async with sink.database.connection() as conn:
        rows = await conn.fetch(
            "SELECT model, version, extract(epoch FROM window_start)::float8 AS start "
            "FROM drift_reports ORDER BY 1, 2, 3"
        )
    return [(row["model"], row["version"], row["start"]) for row in rows]


async def test_a_report_recorded_twice_is_stored_once(
    store: DriftStore, sink: PredictionSink
) -> None:
    first, second = report(0), report(1)
    assert await store.record([first, second]) == [first, second]
    # A redelivery, with the same window also twice in the batch and one new window.
    third = report(2)
    assert await store.record([second, first, third, third]) == [third]
    assert await stored_rows(sink) == [
        ("credit", "v1", START),
        ("credit", "v1", START + WINDOW_S),
        ("credit", "v1", START + 2 * WINDOW_S),
    ]


async def test_the_first_report_of_a_window_wins(store: DriftStore) -> None:
    # Same (model, version, window_start), other numbers: a replay of a different run.
    first = report(0, n=5, verdict="insufficient", alarm=False, trigger_id=None, consecutive=0)
    assert await store.record([first]) == [first]
    assert await store.record([report(0)]) == []
    [stored] = await store.recent("credit")
    assert stored.report.n == 5 and stored.report.verdict == "insufficient"


async def test_workers_recording_the_same_reports_at_once_store_each_once(
    store: DriftStore, sink: PredictionSink
) -> None:
    batch = [report(i) for i in range(20)]
    outcomes = await asyncio.gather(*(store.record(batch) for _ in range(4)))
    # Whoever won each row, every report was new to exactly one writer.
    won = [r for outcome in outcomes for r in outcome]
    assert sorted(won, key=lambda r: r.window_start) == batch
    assert len(await stored_rows(sink)) == 20


async def test_recent_is_newest_first_across_versions_and_reads_back_what_was_stored(
    store: DriftStore,
) -> None:
    reports = [report(0), report(1), report(2, version="v2"), report(3, version="v2")]
    quiet = report(
        4,
        version="v2",
        features={},
        verdict="insufficient",
        consecutive=0,
        alarm=False,
        trigger_id=None,
        n=3,
    )
    await store.record([*reports, quiet, report(9, model="other")])
    stored = await store.recent("credit", limit=3)
    assert [s.report for s in stored] == [quiet, reports[3], reports[2]]
    assert all(s.recorded_at > START for s in stored)
    assert [s.report for s in await store.recent("credit")] == [quiet, *reversed(reports)]
    assert await store.recent("nobody") == []


async def test_the_same_window_of_two_versions_is_two_reports(store: DriftStore) -> None:
    both = [report(0, version="v1"), report(0, version="v2")]
    assert await store.record(both) == both
    assert [s.report.version for s in await store.recent("credit")] == ["v2", "v1"]


async def test_postgresql_down_is_a_transient_sink_error() -> None:
    # Nothing listens on a port that was free a moment ago.
    down = PredictionSink(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", 0.05, 0.5)
    with pytest.raises(SinkError) as caught:
        await DriftStore(down.database).record([report(0)])
    assert is_transient(caught.value.__cause__)
    with pytest.raises(SinkError, match="cannot open PostgreSQL"):
        await DriftStore(down.database).recent("credit")
