"""Enrichment precedence: request value, then fresh stored value, then default (flagged)."""

from __future__ import annotations

import numpy as np

from phoenix_stream.features.codec import StoredFeatures
from phoenix_stream.features.enrich import assemble, unknown_overrides

NAMES = ("age", "income", "amount")
DEFAULTS = np.array([40.0, 50.0, 10.0], dtype=np.float32)


def test_precedence_and_flags() -> None:
    stored = [
        StoredFeatures({"age": 30.0, "income": 70.0}, updated_at=1000.0),
        None,
        StoredFeatures({"age": 60.0, "income": 20.0}, updated_at=0.0),  # stale
    ]
    overrides = [{"amount": 5.0, "income": 99.0}, {"amount": 7.0}, None]
    matrix = assemble(NAMES, DEFAULTS, stored, overrides, now=1010.0, max_age_s=100.0)
    assert matrix.values.dtype == np.float32
    np.testing.assert_array_equal(
        matrix.values,
        np.array([[30.0, 99.0, 5.0], [40.0, 50.0, 7.0], [40.0, 50.0, 10.0]], dtype=np.float32),
    )
    assert matrix.defaults_used == [[], ["age", "income"], ["age", "income", "amount"]]


def test_defaults_array_is_not_modified() -> None:
    before = DEFAULTS.copy()
    assemble(NAMES, DEFAULTS, [None], [{"age": 1.0}], now=0.0, max_age_s=1.0)
    np.testing.assert_array_equal(DEFAULTS, before)


def test_unknown_overrides() -> None:
    names = frozenset(NAMES)
    assert unknown_overrides(names, None) is None
    assert unknown_overrides(names, {"age": 1.0}) is None
    assert unknown_overrides(names, {"zeta": 1.0, "beta": 2.0, "age": 3.0}) == "beta"
