"""Drift reports as Prometheus samples: gauges per feature, counters per window and alarm."""

from __future__ import annotations

from dataclasses import replace

from phoenix_stream import metrics
from phoenix_stream.drift.metrics_export import DriftMetrics
from phoenix_stream.drift.report import DriftReport, FeatureDrift

REPORT = DriftReport(
    model="m_export",
    version="v1",
    window_start=1_700_000_000.0,
    window_end=1_700_000_060.0,
    n=1000,
    features={
        "age": FeatureDrift(0.21, 1e-9, 0.21, True),
        "__score__": FeatureDrift(0.02, 0.6, 0.02, False),
    },
    verdict="drift",
    consecutive=2,
    alarm=True,
    trigger_id="m_export:v1:1700000000000",
)


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_gauges_per_feature_and_counters_per_window() -> None:
    DriftMetrics().publish([REPORT])
    age = {"model": "m_export", "version": "v1", "feature": "age"}
    score = {**age, "feature": "__score__"}
    assert sample("phoenix_drift_statistic", **age) == 0.21
    assert sample("phoenix_drift_p_value", **age) == 1e-9
    assert sample("phoenix_drift_drifted", **age) == 1.0
    assert sample("phoenix_drift_drifted", **score) == 0.0
    assert sample("phoenix_drift_windows_total", model="m_export", verdict="drift") == 1.0
    assert sample("phoenix_drift_alarms_total", model="m_export") == 1.0


def test_a_late_older_window_is_counted_but_does_not_overwrite_the_gauges() -> None:
    exporter = DriftMetrics()
    newer = replace(
        REPORT,
        model="m_late",
        window_start=1_700_000_060.0,
        window_end=1_700_000_120.0,
        features={"age": FeatureDrift(0.05, 0.2, 0.05, False)},
        verdict="no_drift",
        consecutive=0,
        alarm=False,
        trigger_id=None,
    )
    older = replace(REPORT, model="m_late")
    exporter.publish([newer, older])
    age = {"model": "m_late", "version": "v1", "feature": "age"}
    assert sample("phoenix_drift_statistic", **age) == 0.05
    assert sample("phoenix_drift_drifted", **age) == 0.0
    assert sample("phoenix_drift_windows_total", model="m_late", verdict="no_drift") == 1.0
    assert sample("phoenix_drift_windows_total", model="m_late", verdict="drift") == 1.0
    assert sample("phoenix_drift_alarms_total", model="m_late") == 1.0
