"""Drift reports to rows and back, and what ``DriftStore.record`` refuses or returns.

The SQL itself runs on the real PostgreSQL in tests/integration/test_drift_store.py; here a
fake connection stands in, so only the conversion and the batch bookkeeping are tested.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.drift.report import RULE_KEYS, DriftReport, FeatureDrift
from phoenix_stream.exceptions import SinkError, ValidationError
from phoenix_stream.storage.drift import (
    INSERT_COLUMNS,
    DriftStore,
    StoredDriftReport,
    check_reports,
    insert_columns,
    stored_report,
)

RULE = {
    "alpha": 0.05,
    "correction": "bonferroni",
    "effect_floor": 0.1,
    "min_window": 200,
    "persistence": 2,
    "bins": 50,
}


def report(**changes: Any) -> DriftReport:
    """A valid report of two features and the score; ``changes`` replace fields."""
    base = DriftReport(
        model="credit",
        version="v1",
        window_start=1_700_000_000.0,
        window_end=1_700_000_060.0,
        n=1000,
        features={
            "age": FeatureDrift(0.21, 1.5e-30, 0.21, True),
            "income": FeatureDrift(0.03, 0.41, 0.03, False),
            "__score__": FeatureDrift(0.12, 2e-11, 0.12, True),
        },
        verdict="drift",
        consecutive=2,
        alarm=True,
        trigger_id="credit:v1:1700000000000",
        rule=RULE,
    )
    return replace(base, **changes)


def row_of(columns: list[list[Any]], index: int, recorded_at: float = 1.7e9) -> dict[str, Any]:
    """What the ``recent`` query gives for the ``index``-th inserted report."""
    row = {name: column[index] for name, column in zip(INSERT_COLUMNS, columns, strict=True)}
    return {**row, "recorded_at": recorded_at}


# ------------------------------------------------------------------ strategies

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True)
FEATURE_NAMES = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=128,
)
UNIT = st.floats(0.0, 1.0)
FEATURES = st.builds(
    FeatureDrift,
    statistic=UNIT,
    p_value=UNIT | st.sampled_from([5e-324, 1e-300]),
    effect=st.floats(0.0, 1e300),
    drifted=st.booleans(),
)
RULES = st.fixed_dictionaries(
    {
        "alpha": st.floats(1e-9, 0.999),
        "correction": st.sampled_from(["bonferroni", "bh"]),
        "effect_floor": st.floats(0.0, 10.0),
        "min_window": st.integers(0, 10**6),
        "persistence": st.integers(1, 10),
        "bins": st.integers(1, 100),
    }
)


@st.composite
def reports(draw: st.DrawFn) -> DriftReport:
    start = draw(st.floats(0.0, 2.5e11))
    alarm = draw(st.booleans())
    return DriftReport(
        model=draw(NAMES),
        version=draw(NAMES),
        window_start=start,
        window_end=start + draw(st.floats(0.0, 86_400.0)),
        n=draw(st.integers(0, 2**63 - 1)),
        features=draw(st.dictionaries(FEATURE_NAMES, FEATURES, max_size=6)),
        verdict=draw(st.sampled_from(["drift", "no_drift", "insufficient"])),
        consecutive=draw(st.integers(0, 2**31 - 1)),
        alarm=alarm,
        trigger_id=draw(st.text(max_size=40).filter(lambda t: "\x00" not in t)) if alarm else None,
        rule=draw(RULES),
    )


# ------------------------------------------------------------------ conversion


@given(reports())
def test_a_valid_report_survives_the_row_round_trip(original: DriftReport) -> None:
    check_reports([original])  # what record() accepts ...
    columns = insert_columns([original])
    back = stored_report(row_of(columns, 0, recorded_at=1_700_000_123.5))
    assert back == StoredDriftReport(original, 1_700_000_123.5)  # ... reads back unchanged
    assert back.as_dict() == {**original.as_dict(), "recorded_at": 1_700_000_123.5}


def test_columns_follow_the_insert_order_with_json_for_features_and_rule() -> None:
    columns = insert_columns([report(), report(version="v2", alarm=False, trigger_id=None)])
    by_name = dict(zip(INSERT_COLUMNS, columns, strict=True))
    assert by_name["version"] == ["v1", "v2"]
    assert by_name["window_start"] == [1_700_000_000.0, 1_700_000_000.0]
    assert by_name["alarm"] == [True, False] and by_name["trigger_id"][1] is None
    features = orjson.loads(by_name["features"][0])
    assert features["__score__"] == {
        "statistic": 0.12,
        "p_value": 2e-11,
        "effect": 0.12,
        "drifted": True,
    }
    assert orjson.loads(by_name["rule"][0]) == RULE


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (
            report(features={"age": FeatureDrift(math.nan, 0.5, 0.0, False)}),
            "features.age.statistic",
        ),
        (report(features={"age": FeatureDrift(0.1, math.inf, 0.1, False)}), "features.age.p_value"),
        (report(model="credit/../x"), "model"),
        (report(window_end=1_699_999_999.0), "window_end"),
        (report(rule={}), "rule"),
        (report(alarm=True, trigger_id=None), "trigger_id"),
        (report(n=-1), "n"),
    ],
)
def test_a_report_that_could_not_be_read_back_is_refused_naming_the_field(
    bad: DriftReport, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        check_reports([report(), bad])
    assert caught.value.field == f"reports[1].{field}"


def test_a_corrupt_stored_row_is_a_sink_error_naming_the_row() -> None:
    row = row_of(insert_columns([report()]), 0)
    row["features"] = '{"age": {"statistic": null}}'  # written around the store
    with pytest.raises(SinkError, match=r"\('credit', 'v1', 1700000000.0\).*features.age"):
        stored_report(row)


# ------------------------------------------------------------------ record() bookkeeping


class FakeConnection:
    """Answers the insert as PostgreSQL would if the keys in ``stored`` were there before."""

    def __init__(self, stored: set[tuple[str, str, float]]) -> None:
        self.stored = stored
        self.batches: list[int] = []

    async def fetch(self, query: str, *columns: list[Any]) -> list[dict[str, int]]:
        self.batches.append(len(columns[0]))
        new = []
        for position, key in enumerate(zip(*columns[:3], strict=True), start=1):
            if key not in self.stored:
                self.stored.add(key)
                new.append({"position": position})
        return new


class FakeDatabase:
    """Hands out the one fake connection, as ``Database.connection`` does."""

    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[FakeConnection]:
        yield self.conn


def store_on(conn: FakeConnection) -> DriftStore:
    return DriftStore(FakeDatabase(conn))  # type: ignore[arg-type]


async def test_record_returns_the_new_reports_in_order_once_each() -> None:
    conn = FakeConnection({("credit", "v1", 1_700_000_000.0)})
    first, later = report(), report(window_start=1_700_000_060.0, window_end=1_700_000_120.0)
    other = report(version="v2")
    # first: stored before; later twice in the batch: sent once; other: new.
    new = await store_on(conn).record([first, later, later, other])
    assert new == [later, other]
    assert conn.batches == [3]


async def test_record_writes_nothing_when_a_report_is_invalid() -> None:
    conn = FakeConnection(set())
    bad = report(features={"age": FeatureDrift(0.5, math.nan, 0.5, True)})
    with pytest.raises(ValidationError, match=r"reports\[1\]\.features\.age\.p_value"):
        await store_on(conn).record([report(), bad])
    assert conn.batches == []


async def test_record_of_nothing_sends_nothing() -> None:
    conn = FakeConnection(set())
    assert await store_on(conn).record([]) == []
    assert conn.batches == []


def test_rule_keys_are_what_the_example_holds() -> None:
    # The example above must stay a valid report if the rule grows a key.
    assert set(RULE) == set(RULE_KEYS)
