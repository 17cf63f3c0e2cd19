"""KS on binned counts against scipy on the raw samples; corrections; the effect floor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from phoenix_stream.drift.histograms import Bins
from phoenix_stream.drift.statistics import (
    feature_tests,
    ks_binned,
    rejections,
    wasserstein_binned,
)
from phoenix_stream.training.datagen import FEATURE_NAMES, make_dataset

REFERENCE = np.random.default_rng(0).standard_normal(5_000)
BINS = Bins.from_reference({"x": REFERENCE})


def binned(sample: np.ndarray, bins: Bins = BINS) -> np.ndarray:
    counts: np.ndarray = bins.count(np.asarray(sample).reshape(-1, 1))[0]
    return counts


def test_identical_samples_give_d_zero_and_p_one() -> None:
    d, p = ks_binned(BINS.reference_counts[0], BINS.reference_counts[0])
    assert d == pytest.approx(0.0, abs=1e-12) and p == 1.0
    # Same distribution, another sample: D small and p far from significance.
    d, p = ks_binned(
        binned(np.random.default_rng(1).standard_normal(1_000)), BINS.reference_counts[0]
    )
    assert d < 0.05 and p > 0.1


def test_a_one_sigma_shift_gives_a_large_d_and_a_tiny_p() -> None:
    d, p = ks_binned(
        binned(np.random.default_rng(2).normal(1.0, 1.0, 1_000)), BINS.reference_counts[0]
    )
    # The population D of N(0,1) vs N(1,1) is 2 Phi(0.5) - 1 = 0.383.
    assert 0.33 < d < 0.43
    assert p < 1e-50


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("seed", range(4))
def test_binned_d_is_within_the_largest_bin_mass_below_the_exact_d(shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    window = rng.normal(shift, 1.3, 1_000)
    counts = binned(window)
    d, _ = ks_binned(counts, BINS.reference_counts[0])
    exact = stats.ks_2samp(window, REFERENCE, method="exact").statistic
    bound = max((counts / counts.sum()).max(), (BINS.reference_counts[0] / 5_000).max())
    assert 0.0 <= exact - d <= bound + 1e-12


def test_on_a_discrete_feature_d_is_exact_and_p_close_to_scipys() -> None:
    reference, _ = make_dataset(5_000, seed=0)
    window, _ = make_dataset(1_000, seed=3)
    j = FEATURE_NAMES.index("duration_months")
    bins = Bins.from_reference({"duration_months": reference[:, j]})
    d, p = ks_binned(binned(window[:, j], bins), bins.reference_counts[0])
    exact = stats.ks_2samp(window[:, j], reference[:, j], method="asymp")
    assert d == pytest.approx(exact.statistic, abs=1e-12)
    # Kolmogorov's limit law is conservative against scipy's finite-n kstwo: never smaller.
    assert exact.pvalue <= p <= exact.pvalue + 0.01


def test_wasserstein_is_in_reference_stds() -> None:
    reference = np.random.default_rng(4).normal(100.0, 20.0, 5_000)
    bins = Bins.from_reference({"x": reference})
    window = np.random.default_rng(5).normal(110.0, 20.0, 1_000)
    w = wasserstein_binned(binned(window, bins), bins.reference_counts[0], bins.support[0])
    raw = stats.wasserstein_distance(window, reference) / reference.std()
    assert w == pytest.approx(raw, abs=0.03) and w == pytest.approx(0.5, abs=0.1)
    same = wasserstein_binned(bins.reference_counts[0], bins.reference_counts[0], bins.support[0])
    assert same == pytest.approx(0.0, abs=1e-12)


def test_bonferroni_and_benjamini_hochberg_differ_as_they_should() -> None:
    p = np.array([0.03, 0.01, 0.2, 0.02])
    # Bonferroni: p < 0.05 / 4 = 0.0125. BH step-up: the 3rd smallest, 0.03, is at most
    # 3 x 0.05 / 4 = 0.0375, so it and the smaller two are rejected.
    assert rejections(p, 0.05, "bonferroni").tolist() == [False, True, False, False]
    assert rejections(p, 0.05, "bh").tolist() == [True, True, False, True]
    assert rejections(np.array([0.04, 0.3]), 0.05, "bh").tolist() == [False, False]
    with pytest.raises(ValueError, match="correction"):
        rejections(p, 0.05, "holm")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    p=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30),
    alpha=st.floats(0.001, 0.5),
)
def test_bh_rejects_what_scipys_adjusted_p_values_reject(p: list[float], alpha: float) -> None:
    values = np.array(p)
    adjusted = stats.false_discovery_control(values, method="bh")
    ours = rejections(values, alpha, "bh")
    # Ties at the boundary may differ by float rounding of k alpha / m: skip those draws.
    near = np.isclose(adjusted, alpha, rtol=1e-9, atol=0.0)
    assert np.array_equal(ours[~near], (adjusted <= alpha)[~near])
    assert np.all(rejections(values, alpha, "bonferroni") <= ours)


def two_features(window_shift: float, n: int, seed: int) -> tuple[np.ndarray, Bins]:
    rng = np.random.default_rng(seed)
    bins = Bins.from_reference({"a": REFERENCE, "b": -REFERENCE})
    rows = np.column_stack([rng.normal(window_shift, 1.0, n), -rng.standard_normal(n)])
    return bins.count(rows), bins


def test_a_shifted_feature_drifts_and_the_others_do_not() -> None:
    window, bins = two_features(0.5, 1_000, seed=6)
    result = feature_tests(window, bins.reference_counts, bins.names)
    assert result.n == 1_000 and result.verdict == "drift"
    assert result.features["a"].drifted and not result.features["b"].drifted
    assert result.features["a"].effect == result.features["a"].statistic


def test_a_significant_but_tiny_effect_is_not_drift() -> None:
    # The case that makes plain KS cry wolf: 100,000 rows, a 0.03-sigma shift.
    reference = np.random.default_rng(7).standard_normal(100_000)
    bins = Bins.from_reference({"x": reference})
    window = binned(np.random.default_rng(8).normal(0.03, 1.0, 100_000), bins)[None, :]
    result = feature_tests(window, bins.reference_counts, bins.names)
    feature = result.features["x"]
    assert feature.p_value < 0.01 and feature.statistic < 0.1
    assert not feature.drifted and result.verdict == "no_drift"
    # With the floor lowered to 0 the same window is drift.
    assert feature_tests(window, bins.reference_counts, bins.names, effect_floor=0.0).verdict == (
        "drift"
    )


def test_a_small_window_is_insufficient_however_shifted() -> None:
    window, bins = two_features(3.0, 499, seed=9)
    result = feature_tests(window, bins.reference_counts, bins.names, min_window=500)
    assert result.verdict == "insufficient" and result.n == 499
    assert result.features["a"].p_value < 1e-10 and not result.features["a"].drifted
    empty = feature_tests(np.zeros_like(window), bins.reference_counts, bins.names)
    assert empty.verdict == "insufficient" and empty.features["a"].p_value == 1.0


def test_wasserstein_can_be_the_effect() -> None:
    window, bins = two_features(0.5, 1_000, seed=10)
    result = feature_tests(window, bins.reference_counts, bins.names, support=bins.support)
    assert result.features["a"].effect == pytest.approx(0.5, abs=0.1)
    assert result.features["a"].drifted and result.features["a"].statistic > 0.1


def test_inconsistent_input_is_refused() -> None:
    window, bins = two_features(0.0, 600, seed=11)
    with pytest.raises(ValueError, match="totals differ"):
        feature_tests(window + np.array([[1], [0]]), bins.reference_counts, bins.names)
    with pytest.raises(ValueError, match="B\\) counts"):
        feature_tests(window[:1], bins.reference_counts, bins.names)
    with pytest.raises(ValueError, match="alpha"):
        feature_tests(window, bins.reference_counts, bins.names, alpha=1.5)
    with pytest.raises(ValueError, match="correction"):
        feature_tests(window, bins.reference_counts, bins.names, correction="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one row"):
        ks_binned(np.zeros(3, dtype=np.int64), np.ones(3, dtype=np.int64))


BIN_PAIRS = st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=2, max_size=12)


@given(BIN_PAIRS.filter(lambda bins: all(sum(side) > 0 for side in zip(*bins, strict=True))))
def test_the_p_value_is_scipys_kolmogorov_limit_law(bins: list[tuple[int, int]]) -> None:
    # The code calls special.kolmogorov, not stats.kstwobign.sf: importing scipy.stats
    # cost every worker 1.1 s at start. The two must be one law.
    w, r = (np.asarray(side) for side in zip(*bins, strict=True))
    d, p = ks_binned(w, r)
    n, m = w.sum(), r.sum()
    assert p == pytest.approx(stats.kstwobign.sf(d * np.sqrt(n * m / (n + m))), abs=1e-12)
