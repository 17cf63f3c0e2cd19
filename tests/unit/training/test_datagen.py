"""Synthetic credit-risk data: determinism, plausible ranges and the known labelling rule."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from phoenix_stream.training import datagen
from phoenix_stream.training.datagen import FEATURE_NAMES, PROFILE_FEATURES, REQUEST_FEATURES


def test_feature_names_are_profile_then_request_without_duplicates() -> None:
    assert FEATURE_NAMES == PROFILE_FEATURES + REQUEST_FEATURES
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert 6 <= len(PROFILE_FEATURES) <= 8 and 3 <= len(REQUEST_FEATURES) <= 4


def test_entity_id_for_pads_and_rejects_negatives() -> None:
    assert datagen.entity_id_for(42) == "c000042"
    assert datagen.entity_id_for(1_234_567) == "c1234567"
    with pytest.raises(ValueError):
        datagen.entity_id_for(-1)


def test_entity_profile_is_deterministic_and_seed_dependent() -> None:
    first = datagen.entity_profile("c000042")
    assert first == datagen.entity_profile("c000042")
    assert list(first) == list(PROFILE_FEATURES)
    assert first != datagen.entity_profile("c000042", seed=1)
    assert first != datagen.entity_profile("c000043")


def test_entity_profile_is_stable_across_processes() -> None:
    # Pinned values: a salted hash() would change them from run to run, and workers, the
    # seeding script and the trainer must all agree on every entity.
    profile = datagen.entity_profile("c000042")
    assert profile["age"] == 51.0 and profile["annual_income"] == 36.35


def test_profiles_match_single_profiles_whatever_the_batch() -> None:
    ids = [datagen.entity_id_for(i) for i in range(50)]
    batch = datagen.profiles(ids)
    assert batch.shape == (50, len(PROFILE_FEATURES))
    # A row depends on its entity only, not on its neighbours in the call.
    np.testing.assert_array_equal(batch[7], datagen.profiles(ids[7:8])[0])
    single = datagen.entity_profile(ids[20])
    np.testing.assert_array_equal(batch[20], [single[name] for name in PROFILE_FEATURES])


def test_profiles_have_plausible_ranges_and_correlations() -> None:
    p = datagen.profiles([datagen.entity_id_for(i) for i in range(20_000)])
    col = {name: p[:, j] for j, name in enumerate(PROFILE_FEATURES)}
    assert col["age"].min() >= 18 and col["age"].max() <= 80
    assert 30 <= np.median(col["annual_income"]) <= 60  # thousands of euros a year
    for name in ("annual_income", "existing_debt", "savings", "employment_years"):
        assert col[name].min() >= 0, name
    for name in ("late_payments_24m", "open_credit_lines"):
        np.testing.assert_array_equal(col[name], np.round(col[name]))
    assert np.all(col["employment_years"] <= col["age"] - 18)
    assert np.corrcoef(col["age"], col["employment_years"])[0, 1] > 0.3
    assert np.corrcoef(col["annual_income"], col["existing_debt"])[0, 1] > 0.2


def test_sample_request_features_is_seeded_and_shift_moves_it() -> None:
    a = datagen.sample_request_features(np.random.default_rng(5), 5000)
    b = datagen.sample_request_features(np.random.default_rng(5), 5000)
    assert list(a) == list(REQUEST_FEATURES)
    for name in REQUEST_FEATURES:
        assert a[name].shape == (5000,)
        np.testing.assert_array_equal(a[name], b[name])
    shifted = datagen.sample_request_features(np.random.default_rng(5), 5000, shift=1.0)
    for name in REQUEST_FEATURES:
        assert np.mean(shifted[name]) > np.mean(a[name]), name


def test_default_probability_follows_the_rule() -> None:
    X, _ = datagen.make_dataset(2000, seed=3)
    p = datagen.default_probability(X)
    assert p.shape == (2000,) and np.all((p > 0) & (p < 1))
    idx = {name: j for j, name in enumerate(FEATURE_NAMES)}
    for name, delta in (("late_payments_24m", 3.0), ("credit_amount", 10.0)):
        worse = X.copy()
        worse[:, idx[name]] += delta
        p_worse = datagen.default_probability(worse)
        # Monotone everywhere; strictly up except where capped (6+ late payments) or saturated.
        assert np.all(p_worse >= p) and np.mean(p_worse > p) > 0.95, name
    richer = X.copy()
    richer[:, idx["savings"]] += 50.0
    p_richer = datagen.default_probability(richer)
    assert np.all(p_richer <= p) and np.mean(p_richer < p) > 0.95


def test_default_probability_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        datagen.default_probability(np.zeros((3, len(FEATURE_NAMES) - 1)))


def test_labels_follow_the_probabilities() -> None:
    X, y = datagen.make_dataset(20_000, seed=11)
    p = datagen.default_probability(X)
    assert set(np.unique(y)) == {0, 1}
    assert 0.1 < y.mean() < 0.3
    assert abs(y.mean() - p.mean()) < 0.02
    assert roc_auc_score(y, p) > 0.75  # the rule is informative, labels are not noise


def test_sample_labels_is_seeded() -> None:
    p = np.full(1000, 0.3)
    a = datagen.sample_labels(p, np.random.default_rng(1))
    np.testing.assert_array_equal(a, datagen.sample_labels(p, np.random.default_rng(1)))
    assert a.dtype == np.int64


def test_make_dataset_is_deterministic_per_seed() -> None:
    X1, y1 = datagen.make_dataset(3000, seed=7)
    X2, y2 = datagen.make_dataset(3000, seed=7)
    assert X1.dtype == np.float32 and X1.shape == (3000, len(FEATURE_NAMES))
    assert y1.shape == (3000,)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    X3, _ = datagen.make_dataset(3000, seed=8)
    assert not np.array_equal(X1, X3)
    with pytest.raises(ValueError):
        datagen.make_dataset(0, seed=1)
