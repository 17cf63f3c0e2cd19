"""Drift reports as Prometheus metrics: per feature gauges, windows and alarms counted.

Gauges (``phoenix_drift_statistic``, ``_p_value``, ``_drifted``, by model, version and
feature) show the latest window of each (model, version) this worker reported: an older
window arriving late (a redelivered or reordered report) does not overwrite them. Counters
(``phoenix_drift_windows_total`` by verdict, ``phoenix_drift_alarms_total``) count each
report passed in; pass only the reports newly stored (``DriftStore.record`` returns them)
so that a redelivered window is not counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from phoenix_stream import metrics
from phoenix_stream.drift.report import DriftReport

__all__ = ["DriftMetrics"]


class DriftMetrics:
    """Sets the drift metrics from reports; remembers the newest window per model version."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], float] = {}  # (model, version) -> window start, s

    def publish(self, reports: Iterable[DriftReport]) -> None:
        """Count each report's window and alarm; set the gauges from the newest windows."""
        for report in reports:
            metrics.DRIFT_WINDOWS.labels(report.model, report.verdict).inc()
            if report.alarm:
                metrics.DRIFT_ALARMS.labels(report.model).inc()
            key = (report.model, report.version)
            if report.window_start < self._latest.get(key, float("-inf")):
                continue
            self._latest[key] = report.window_start
            for name, feature in report.features.items():
                labels = (report.model, report.version, name)
                metrics.DRIFT_STATISTIC.labels(*labels).set(feature.statistic)
                metrics.DRIFT_P_VALUE.labels(*labels).set(feature.p_value)
                metrics.DRIFT_DRIFTED.labels(*labels).set(1.0 if feature.drifted else 0.0)
