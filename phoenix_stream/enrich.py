"""Enrichment: build a model's input matrix from stored features and request overrides.

Precedence for each feature: the request's own value, then the entity's stored value
(when fresh), then the manifest default. Every default taken is named on the
prediction (``defaults_used``) so that a caller can tell a real score from a guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from phoenix_stream.features import StoredFeatures


@dataclass(frozen=True, slots=True)
class FeatureMatrix:
    """Model input rows (float32, shape (n, F)) and, per row, the defaulted feature names."""

    values: np.ndarray
    defaults_used: list[list[str]]


def assemble(
    names: Sequence[str],
    defaults: np.ndarray,
    stored: Sequence[StoredFeatures | None],
    overrides: Sequence[Mapping[str, float] | None],
    *,
    now: float,
    max_age_s: float,
) -> FeatureMatrix:
    """Rows for ``len(stored)`` requests in ``names`` order; stale stored values are ignored.

    ``defaults`` is float32 of shape (F,); ``now`` and stored update times are seconds.
    """
    n = len(stored)
    values = np.tile(defaults.astype(np.float32, copy=False), (n, 1))
    defaults_used: list[list[str]] = []
    indexed = list(enumerate(names))
    for row, (entity, override) in enumerate(zip(stored, overrides, strict=True)):
        known: Mapping[str, float] = {}
        if entity is not None and now - entity.updated_at <= max_age_s:
            known = entity.values
        missing: list[str] = []
        target = values[row]
        for column, name in indexed:
            if override is not None and name in override:
                target[column] = override[name]
            elif name in known:
                target[column] = known[name]
            else:
                missing.append(name)
        defaults_used.append(missing)
    return FeatureMatrix(values, defaults_used)


def unknown_overrides(names: frozenset[str], override: Mapping[str, float] | None) -> str | None:
    """The first request feature that the model does not know, or None."""
    if not override:
        return None
    extra = override.keys() - names
    return min(extra) if extra else None
