"""Bins from reference quantiles and window counts: edges, ties, out-of-range values."""

from __future__ import annotations

import bisect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix_stream.drift.histograms import BINS, SCORE, Bins
from phoenix_stream.training.datagen import FEATURE_NAMES, make_dataset


def test_continuous_reference_gets_equal_mass_bins() -> None:
    reference = np.random.default_rng(0).uniform(0.0, 1.0, 10_000)
    bins = Bins.from_reference({"u": reference})
    assert bins.names == ("u",)
    assert bins.requested == BINS and bins.width == BINS
    np.testing.assert_allclose(bins.edges[0], np.arange(1, BINS) / BINS, atol=0.02)
    # Equal mass: every bin holds 1/50 of the reference, up to the interpolated edge.
    assert bins.reference_counts.shape == (1, BINS)
    assert bins.reference_counts.min() >= 199 and bins.reference_counts.max() <= 201


def test_values_beyond_the_edges_fall_in_the_outer_bins_and_edges_open_a_bin() -> None:
    bins = Bins.from_reference({"x": [1.0, 2.0, 3.0, 4.0]}, bins=4)
    edges = bins.edges[0]
    rows = np.array([[-1e300], [edges[0]], [np.nextafter(edges[0], -np.inf)], [1e300], [np.inf]])
    assert bins.count(rows)[0].tolist() == [2, 1, 0, 2]


def test_repeated_values_give_fewer_bins_and_one_bin_per_value() -> None:
    x, _ = make_dataset(5_000, seed=0)
    column = FEATURE_NAMES.index("duration_months")
    bins = Bins.from_reference({"duration_months": x[:, column], "age": x[:, 0]})
    durations = bins.edges[0]
    values, counts = np.unique(x[:, column], return_counts=True)
    # Fewer than 50 bins, every edge a duration, and each duration in its own bin.
    assert set(durations.tolist()) <= set(values.tolist())
    assert bins.edges[1].size > durations.size == len(values) == 8
    assert bins.reference_counts[0, 1:9].tolist() == counts.tolist()
    # Below the smallest duration and the padding past the last one: empty.
    assert bins.reference_counts[0, 0] == 0 and bins.reference_counts[0, 9:].sum() == 0


def test_a_constant_reference_has_one_bin_and_one_below_it() -> None:
    bins = Bins.from_reference({"c": [3.0] * 100, "u": np.linspace(0.0, 1.0, 100)}, bins=10)
    assert bins.edges[0].tolist() == [3.0]
    counts = bins.count(np.array([[2.0, 0.5], [3.0, 0.5], [9.0, 0.5]]))
    assert counts[0].tolist() == [1, 2] + [0] * 8


@settings(max_examples=50, deadline=None)
@given(
    reference=st.lists(st.integers(-20, 20).map(float), min_size=1, max_size=300),
    rows=st.lists(st.floats(-30.0, 30.0), min_size=0, max_size=100),
    nbins=st.integers(1, 60),
)
def test_count_agrees_with_a_bisect_per_value(
    reference: list[float], rows: list[float], nbins: int
) -> None:
    bins = Bins.from_reference({"a": reference, SCORE: [-v for v in reference]}, bins=nbins)
    data = np.column_stack([rows, [-r for r in rows]]) if rows else np.empty((0, 2))
    counts = bins.count(data)
    assert counts.dtype == np.int64 and counts.shape == (2, bins.width)
    for j in range(2):
        expected = np.zeros(bins.width, dtype=np.int64)
        for value in data[:, j]:
            expected[bisect.bisect_right(bins.edges[j].tolist(), value)] += 1
        assert counts[j].tolist() == expected.tolist()
    assert np.array_equal(bins.count(np.column_stack([reference, [-v for v in reference]])),
                          bins.reference_counts)  # fmt: skip


def test_support_is_increasing_midpoints_in_reference_stds() -> None:
    reference = np.random.default_rng(1).normal(10.0, 2.0, 5_000)
    bins = Bins.from_reference({"x": reference, "few": [0.0, 0.0, 1.0, 1.0, 1.0]}, bins=20)
    support = bins.support
    assert np.all(np.diff(support, axis=1) >= 0)
    edges = bins.edges[0]
    np.testing.assert_allclose(support[0, 1], (edges[0] + edges[1]) / 2 / reference.std())
    # The padded bins of the narrow feature repeat its last point: no extra distance.
    assert bins.edges[1].tolist() == [0.0, 1.0]
    assert np.all(support[1, 3:] == support[1, 2])


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Bins.from_reference({"x": []})
    with pytest.raises(ValueError, match="finite"):
        Bins.from_reference({"x": [1.0, float("nan")]})
    with pytest.raises(ValueError, match="bins"):
        Bins.from_reference({"x": [1.0]}, bins=0)
    with pytest.raises(ValueError, match="names no feature"):
        Bins.from_reference({})
    bins = Bins.from_reference({"x": [1.0, 2.0], "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="shape"):
        bins.count(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        bins.count(np.array([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="read-only"):
        bins.reference_counts[0, 0] = 5
