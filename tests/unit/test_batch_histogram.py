"""BatchHistogram exposes exactly what prometheus-client's Histogram would for the same values."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from phoenix_stream.batch_histogram import BatchHistogram

BUCKETS = (0.001, 0.005, 0.01, 0.25, 1.0, 10.0)

values = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)


def exposition(registry: CollectorRegistry) -> list[str]:
    # _created lines differ by construction time; everything else must match.
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


@given(st.lists(st.lists(values, max_size=40), max_size=5), st.sampled_from(["kafka", "http"]))
@example([[0.25, 0.001, 10.0, 10.000001]], "kafka")  # on a bound, and just above the last
@example([[0.25] * 20 + [0.0010000001, 1e6]], "http")  # the same through the numpy path
def test_same_text_as_a_histogram(batches: list[list[float]], source: str) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("x_seconds", "doc", ("source",), BUCKETS, registry=ours)
    single = Histogram("x_seconds", "doc", ["source"], buckets=BUCKETS, registry=theirs)
    for values_ in batches:
        batch.observe_many(values_, source=source)  # a series from its first call on
        child = single.labels(source=source)
        for value in values_:
            child.observe(value)
    mine, reference = exposition(ours), exposition(theirs)
    if not batches:  # neither made a series
        assert not any(line.startswith("x_seconds_") for line in mine)
        return
    # The sums are added in another order: compare them as numbers, the rest as text.
    sums = [line for line in mine if line.startswith("x_seconds_sum")]
    reference_sums = [line for line in reference if line.startswith("x_seconds_sum")]
    assert math.isclose(
        float(sums[0].split()[-1]), float(reference_sums[0].split()[-1]), rel_tol=1e-9
    )
    assert [line for line in mine if line not in sums] == [
        line for line in reference if line not in reference_sums
    ]


def test_non_finite_values_are_left_out() -> None:
    registry = CollectorRegistry()
    batch = BatchHistogram("y_seconds", "doc", (), BUCKETS, registry=registry)
    batch.observe_many([math.nan, math.inf, 0.5])
    text = generate_latest(registry).decode()
    assert "y_seconds_count 1.0" in text
    assert "y_seconds_sum 0.5" in text


def test_labels_must_be_the_declared_ones() -> None:
    batch = BatchHistogram("z_seconds", "doc", ("source",), BUCKETS, registry=CollectorRegistry())
    with pytest.raises(ValueError, match="takes labels"):
        batch.observe_many([1.0], route="/x")


def test_buckets_must_increase() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        BatchHistogram("w", "doc", (), (1.0, 1.0), registry=CollectorRegistry())


def test_single_values_count_like_batches() -> None:
    registry = CollectorRegistry()
    one = BatchHistogram("v_seconds", "doc", ("stage",), BUCKETS, registry=registry)
    values = [0.0005, 0.001, 0.3, 11.0] * 10  # 40: the numpy path
    one.observe_many(values, stage="batch")
    series = one.labels(stage="single")
    for value in values:
        series.observe(value)
    series.observe(math.nan)
    (batched, batched_sum), (counted, counted_sum) = (
        one.labels(stage="batch").snapshot(),
        series.snapshot(),
    )
    assert batched == counted == [20, 0, 0, 0, 10, 0, 10]  # le 0.001, le 1.0, above 10
    assert math.isclose(batched_sum, counted_sum)  # summed in another order


def test_labels_by_position_are_the_labels_by_name() -> None:
    two = BatchHistogram("u_seconds", "doc", ("a", "b"), BUCKETS, registry=CollectorRegistry())
    assert two.labels("x", "y") is two.labels(b="y", a="x")
    with pytest.raises(ValueError, match="takes labels"):
        two.labels("x")
