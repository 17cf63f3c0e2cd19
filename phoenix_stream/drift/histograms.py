"""Fixed bins per feature, taken from the reference sample's quantiles, and window counts.

A window's state is then one small int64 array (features x bins) whatever its row count,
which is what a Faust windowed table can hold and replicate cheaply.

Bin j of a feature with edges ``e`` is ``[e[j-1], e[j])``: bin 0 holds everything below
the first edge, the last bin everything from the last edge up. Edges are the interior
quantiles of the reference (equal mass, each a reference value), deduplicated, so a
feature with few distinct values (``duration_months`` takes 8) gets fewer bins, and a
value that is an edge opens its own bin: each value with at least 1/50 of the mass then
has a bin of its own, and the KS test of such a feature loses nothing to binning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BINS", "SCORE", "Bins", "Sample"]

BINS = 50  # equal-mass bins per feature before deduplication
SCORE = "__score__"  # the pseudo-feature holding the model's score distribution
Sample = Sequence[float] | np.ndarray  # one feature's reference values, 1-D


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, slots=True, eq=False)
class Bins:
    """Per-feature bin edges and the reference's own counts (F, B); build with ``from_reference``.

    Features with fewer bins than B (after deduplication) have empty bins at the end,
    which change neither a CDF nor a KS statistic.
    """

    names: tuple[str, ...]
    edges: tuple[np.ndarray, ...]  # per feature, strictly increasing interior edges
    reference_counts: np.ndarray  # int64 (F, B), the reference binned like any window
    support: np.ndarray  # float64 (F, B): bin midpoints in reference standard deviations
    requested: int = BINS  # bins asked for per feature, before deduplication

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names) or not self.names:
            raise ValueError(f"feature names must be distinct and non-empty, got {self.names}")
        if len(self.edges) != len(self.names):
            raise ValueError(f"{len(self.edges)} edge arrays for {len(self.names)} features")
        shape = (len(self.names), self.width)
        if self.reference_counts.shape != shape or self.support.shape != shape:
            raise ValueError(f"reference_counts and support must have shape {shape}")
        for name, edges in zip(self.names, self.edges, strict=True):
            if edges.ndim != 1 or (edges.size > 1 and not np.all(np.diff(edges) > 0)):
                raise ValueError(f"{name}: edges must be strictly increasing")

    @property
    def width(self) -> int:
        """B: the number of bins of the widest feature."""
        return max(edges.size for edges in self.edges) + 1

    @classmethod
    def from_reference(cls, reference: Mapping[str, Sample], bins: int = BINS) -> Bins:
        """Bins from a reference sample per feature (name -> values, in the feature's units).

        Feature order is the mapping's order. Samples may differ in length; each must be
        non-empty and finite.
        """
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        if not reference:
            raise ValueError("the reference names no feature")
        samples = {name: np.asarray(values, dtype=np.float64) for name, values in reference.items()}
        for name, sample in samples.items():
            if sample.ndim != 1 or sample.size == 0 or not np.all(np.isfinite(sample)):
                raise ValueError(f"reference {name!r}: expected a non-empty list of finite numbers")
        probs = np.arange(1, bins) / bins
        # Quantiles that are sample values (no interpolation): on a discrete feature every
        # edge is one of its values, so frequent values get a bin each.
        edges = tuple(
            _frozen(np.unique(np.quantile(s, probs, method="inverted_cdf")))
            for s in samples.values()
        )
        width = max(e.size for e in edges) + 1
        counts = np.zeros((len(samples), width), dtype=np.int64)
        support = np.empty((len(samples), width), dtype=np.float64)
        for i, (sample, e) in enumerate(zip(samples.values(), edges, strict=True)):
            counts[i] = np.bincount(np.searchsorted(e, sample, side="right"), minlength=width)
            support[i] = _support(sample, e, width)
        return cls(tuple(samples), edges, _frozen(counts), _frozen(support), bins)

    def count(self, rows: np.ndarray) -> np.ndarray:
        """Histogram of rows (n, F) float, columns in ``names`` order: int64 (F, B).

        Values below the first edge count in bin 0, above the last edge in the last bin;
        NaN is refused (ValueError) rather than silently counted as the largest value.
        """
        rows = np.asarray(rows, dtype=np.float64)
        features, width = len(self.names), self.width
        if rows.ndim != 2 or rows.shape[1] != features:
            raise ValueError(f"rows must have shape (n, {features}), got {rows.shape}")
        if np.isnan(rows).any():
            raise ValueError("rows contain NaN")
        index = np.empty(rows.shape, dtype=np.int64)
        for j, edges in enumerate(self.edges):
            index[:, j] = np.searchsorted(edges, rows[:, j], side="right")
        # One bincount for all features: feature j's bins sit at offsets j * width.
        index += np.arange(features, dtype=np.int64) * width
        flat = np.bincount(index.ravel(), minlength=features * width)
        return flat.reshape(features, width).astype(np.int64, copy=False)


def _support(sample: np.ndarray, edges: np.ndarray, width: int) -> np.ndarray:
    """Bin midpoints (the outer bins closed by the sample's min and max), in sample stds.

    Padding bins repeat the last point, so they add no distance to a Wasserstein sum.
    """
    low, high = float(sample.min()), float(sample.max())
    if edges.size == 0:
        points = np.array([low])
    else:
        bounds = np.concatenate([[min(low, edges[0])], edges, [max(high, edges[-1])]])
        points = (bounds[:-1] + bounds[1:]) / 2.0
    std = float(sample.std())
    # A constant reference has no scale: distances stay in the feature's own units.
    points = points / (std if std > 0.0 else 1.0)
    return np.concatenate([points, np.full(width - points.size, points[-1])])
