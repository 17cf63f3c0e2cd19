"""A Prometheus histogram that takes a whole batch of observations in one call.

prometheus-client's ``Histogram.observe`` takes one value, under a lock, so a histogram of
every prediction's latency would cost a Python call per record in the hot path. This one
counts a batch's values into its buckets with one ``numpy.searchsorted`` and exposes the
same text as a ``Histogram`` (cumulative ``_bucket{le=...}``, ``_sum``, ``_count``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry


class _Series:
    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = np.zeros(buckets + 1, dtype=np.int64)  # the last one: above every bound
        self.total = 0.0


class BatchHistogram(Collector):
    """Histogram ``name`` with ``label_names``, observed a batch at a time."""

    def __init__(
        self,
        name: str,
        documentation: str,
        label_names: Sequence[str],
        buckets: Sequence[float],
        *,
        registry: CollectorRegistry,
    ) -> None:
        bounds = np.asarray(buckets, dtype=np.float64)
        if bounds.size == 0 or not np.all(np.isfinite(bounds)) or np.any(np.diff(bounds) <= 0):
            raise ValueError("buckets must be finite and strictly increasing")
        self.name = name
        self._documentation = documentation
        self._label_names = tuple(label_names)
        self._bounds = bounds
        self._le = [repr(float(b)) for b in buckets] + ["+Inf"]  # 0.005, 1.0 as Histogram
        self._series: dict[tuple[str, ...], _Series] = {}
        self._lock = threading.Lock()  # /metrics may be rendered from another thread
        registry.register(self)

    def observe_many(self, values: npt.ArrayLike, **labels: str) -> None:
        """Count ``values`` (seconds, or whatever the unit is) under ``labels``.

        NaN and infinite values are left out: they would poison ``_sum``.
        """
        if set(labels) != set(self._label_names):
            raise ValueError(f"{self.name} takes labels {self._label_names}, got {sorted(labels)}")
        array = np.asarray(values, dtype=np.float64).ravel()
        array = array[np.isfinite(array)]
        if array.size == 0:
            return
        # side="left": a value equal to a bound is counted in that bound's bucket (le).
        index = np.searchsorted(self._bounds, array, side="left")
        counts = np.bincount(index, minlength=self._bounds.size + 1)
        key = tuple(labels[name] for name in self._label_names)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series(self._bounds.size)
            series.counts += counts
            series.total += float(array.sum())

    def describe(self) -> Iterator[Metric]:
        """The family without samples (the registry checks names with it)."""
        yield HistogramMetricFamily(self.name, self._documentation, labels=self._label_names)

    def collect(self) -> Iterator[Metric]:
        """The family with one cumulative histogram per label set."""
        family = HistogramMetricFamily(self.name, self._documentation, labels=self._label_names)
        with self._lock:
            snapshot = [(key, s.counts.copy(), s.total) for key, s in self._series.items()]
        for key, counts, total in snapshot:
            cumulative = np.cumsum(counts).tolist()
            family.add_metric(
                list(key), list(zip(self._le, cumulative, strict=True)), sum_value=total
            )
        yield family
