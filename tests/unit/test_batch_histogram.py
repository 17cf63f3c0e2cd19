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


@given(st.lists(st.lists(values, max_size=20), max_size=5), st.sampled_from(["kafka", "http"]))
@example([[0.25, 0.001, 10.0, 10.000001]], "kafka")  # on a bound, and just above the last
def test_same_text_as_a_histogram(batches: list[list[float]], source: str) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("x_seconds", "doc", ("source",), BUCKETS, registry=ours)
    single = Histogram("x_seconds", "doc", ["source"], buckets=BUCKETS, registry=theirs)
    observed = False
    for values_ in batches:
        batch.observe_many(values_, source=source)
        for value in values_:
            single.labels(source=source).observe(value)
            observed = True
    mine, reference = exposition(ours), exposition(theirs)
    if not observed:  # Histogram shows a child only once created
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
