"""The drift window keeper on plain dicts: windows summed, closed once, judged once.

The same keeper runs on Faust's tables in tests/integration/test_drift.py (restart,
rebalance and replay on real brokers); here its rules are checked without Kafka.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream import metrics
from phoenix_stream.drift.histograms import Bins
from phoenix_stream.drift.keeper import DriftWindowKeeper
from phoenix_stream.drift.monitor import DriftMonitor, DriftRule
from phoenix_stream.drift.report import DriftReport

W = 60.0  # window, seconds
KEY, MODEL, VERSION = "credit/3", "credit", "3"
_RNG = np.random.default_rng(0)
BINS = DriftMonitor.for_model(
    MODEL, VERSION, {"x": _RNG.standard_normal(5_000)}, _RNG.uniform(0.0, 1.0, 5_000).tolist()
).bins


class DictWindows:
    """``WindowCounts`` on a dict keyed by (key, window start)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, float], dict[str, Any]] = {}

    def current(self, key: str, now: float) -> dict[str, Any]:
        return dict(self.data.get((key, now - now % W), {}))

    def put(self, key: str, now: float, value: dict[str, Any]) -> None:
        self.data[(key, now - now % W)] = value

    def window(self, key: str, start: float, now: float) -> dict[str, Any]:
        return dict(self.data.get((key, start), {}))

    def forget(self, key: str, up_to_start: float) -> None:
        for stored in [k for k in self.data if k[0] == key and k[1] <= up_to_start]:
            del self.data[stored]


class References:
    def __init__(self, bins: Bins | None = BINS) -> None:
        self.rule = DriftRule()
        self._bins = bins
        self.prepared: list[tuple[str, str]] = []

    async def prepare(self, keys: Iterable[tuple[str, str]]) -> None:
        self.prepared.extend(keys)

    def bins(self, model: str, version: str) -> Bins | None:
        return self._bins


class Keeper:
    """A keeper, its tables and what it published."""

    def __init__(
        self,
        windows: DictWindows | None = None,
        monitors: dict[str, Any] | None = None,
        references: References | None = None,
    ) -> None:
        self.windows = windows if windows is not None else DictWindows()
        self.monitors = monitors if monitors is not None else {}
        self.reports: list[DriftReport] = []
        self.keeper = DriftWindowKeeper(
            self.windows, self.monitors, references or References(), W, self._publish
        )

    async def _publish(self, report: DriftReport) -> None:
        self.reports.append(report)

    async def add(self, now: float, rows: int = 10, shift: float = 0.0, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        data = np.column_stack([rng.normal(shift, 1.0, rows), rng.uniform(0.0, 1.0, rows)])
        await self.keeper.add(KEY, MODEL, VERSION, BINS.count(data), now)


def _late_counts() -> float:
    value = metrics.REGISTRY.get_sample_value("phoenix_drift_late_counts_total", {"model": MODEL})
    return value or 0.0


async def test_a_window_closes_once_counts_come_a_full_window_after_its_end() -> None:
    kept = Keeper()
    await kept.add(0.0, rows=300)
    await kept.add(59.0, rows=200)
    await kept.add(61.0, rows=50)  # the next window: window 0 may still get counts
    await kept.add(100.0, rows=50, seed=1)
    assert kept.reports == []
    await kept.add(125.0, rows=7)  # window 2 starts 2 windows after window 0's start
    assert [(r.window_start, r.window_end, r.n) for r in kept.reports] == [(0.0, W, 500)]
    assert (KEY, 0.0) not in kept.windows.data  # forgotten once closed
    assert kept.windows.data[(KEY, 60.0)]["n"] == 2 and kept.windows.data[(KEY, 120.0)]["n"] == 1
    assert kept.monitors[KEY]["pending"] == [60.0, 120.0]


async def test_counts_for_a_window_judged_already_are_left_out_and_counted() -> None:
    kept = Keeper()
    for now in (0.0, 60.0, 125.0):
        await kept.add(now, rows=100)
    before = _late_counts()
    await kept.add(30.0, rows=100)  # window 0 is judged: late
    assert _late_counts() == before + 1
    assert (KEY, 0.0) not in kept.windows.data and len(kept.reports) == 1


async def test_a_restarted_keeper_on_the_same_tables_judges_no_window_twice() -> None:
    first = Keeper()
    for now in (0.0, 60.0, 125.0, 185.0):
        await first.add(now, rows=100)
    assert [r.window_start for r in first.reports] == [0.0, 60.0]
    # A new owner reads the same tables (the changelog) and is sent the same records again.
    second = Keeper(first.windows, first.monitors)
    for now in (0.0, 60.0, 125.0, 185.0, 245.0):
        await second.add(now, rows=100)
    assert [r.window_start for r in second.reports] == [120.0]


async def test_drift_that_persists_raises_one_alarm() -> None:
    kept = Keeper()
    persistence = DriftRule().persistence
    for index in range(persistence + 3):
        await kept.add(index * W, rows=1_000, shift=2.0, seed=index)
    alarms = [r for r in kept.reports if r.alarm]
    assert len(kept.reports) == persistence + 1
    assert len(alarms) == 1 and alarms[0].consecutive == persistence


async def test_a_version_that_cannot_be_loaded_is_not_judged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kept = Keeper(references=References(bins=None))
    with caplog.at_level(logging.WARNING, logger="phoenix_stream.drift.keeper"):
        for now in (0.0, 60.0, 125.0):
            await kept.add(now)
    assert kept.reports == [] and "cannot be loaded; window 0.0 not tested" in caplog.text
    assert (KEY, 0.0) not in kept.windows.data  # forgotten all the same: memory stays bounded


@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.floats(0.0, W, exclude_max=True), st.integers(1, 30)),
        min_size=1,
        max_size=40,
    )
)
async def test_any_arrival_order_reports_each_window_once_with_its_rows(
    arrivals: list[tuple[int, float, int]],
) -> None:
    kept = Keeper()
    added: dict[float, int] = {}
    for index, offset, rows in arrivals:
        now = index * W + offset
        start = now - now % W  # not index * W: the sum may round up to the next window
        late_before = _late_counts()
        await kept.add(now, rows=rows)
        if _late_counts() == late_before:
            added[start] = added.get(start, 0) + rows
    starts = [r.window_start for r in kept.reports]
    assert starts == sorted(set(starts))  # each window once, in order
    for report in kept.reports:
        assert report.n == added[report.window_start]
    # What is still held has not been reported; what is pending is in order.
    held = {start for _, start in kept.windows.data}
    assert not held & set(starts)
    assert kept.monitors[KEY]["pending"] == sorted(kept.monitors[KEY]["pending"])
