"""Write grafana/dashboards/*.json from the panel list below (dashboards as code).

Run: python scripts/build_dashboards.py   (tests check the committed JSON is up to date
and that every metric it queries exists in phoenix_stream.metrics).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"

# (title, PromQL expressions, unit)
_LATENCY = "sum by (le) (rate(phoenix_inference_latency_seconds_bucket[1m]))"

PANELS: list[tuple[str, list[str], str]] = [
    (
        "Requests per second by source",
        ["sum by (source) (rate(phoenix_requests_total[1m]))"],
        "reqps",
    ),
    (
        "Predictions per second by variant",
        ["sum by (model, version, variant) (rate(phoenix_predictions_total[1m]))"],
        "reqps",
    ),
    (
        "Dead letters per second by kind",
        ["sum by (kind) (rate(phoenix_dead_letters_total[1m]))"],
        "reqps",
    ),
    (
        "Worker batch latency p50 / p99",
        [f"histogram_quantile(0.5, {_LATENCY})", f"histogram_quantile(0.99, {_LATENCY})"],
        "s",
    ),
    (
        "Predictions on default features (share)",
        [
            "sum(rate(phoenix_defaulted_predictions_total[5m])) / "
            "sum(rate(phoenix_predictions_total[5m]))"
        ],
        "percentunit",
    ),
    (
        "Degraded predictions (feature store down) per second",
        [
            "sum(rate(phoenix_degraded_predictions_total[1m]))",
            "sum(rate(phoenix_feature_store_errors_total[1m]))",
        ],
        "reqps",
    ),
    (
        "PostgreSQL sink rows per second, duplicates skipped, retries",
        [
            "sum(rate(phoenix_sink_rows_total[1m]))",
            "sum(rate(phoenix_sink_duplicates_total[1m]))",
            "sum(rate(phoenix_sink_retries_total[1m]))",
        ],
        "ops",
    ),
    (
        "Dependencies up (last readiness probe)",
        ["min by (dependency) (phoenix_dependency_up)"],
        "short",
    ),
    (
        "Shadow predictions per second",
        ["sum by (model, version) (rate(phoenix_shadow_predictions_total[1m]))"],
        "reqps",
    ),
    (
        "Failure policy: isolated failures and outage retries per second, by agent",
        [
            "sum by (agent) (rate(phoenix_processing_errors_total[1m]))",
            "sum by (agent) (rate(phoenix_agent_retries_total[1m]))",
        ],
        "ops",
    ),
    (
        "Undeliverable outputs and produce retries per second",
        [
            "sum by (topic) (rate(phoenix_undeliverable_total[1m]))",
            "sum(rate(phoenix_produce_retries_total[1m]))",
        ],
        "ops",
    ),
    (
        "Model versions loaded, and load failures per second",
        [
            "min by (model, version) (phoenix_model_loaded)",
            "sum by (model, version) (rate(phoenix_model_load_failures_total[5m]))",
        ],
        "short",
    ),
    (
        "Requests per agent batch (p50)",
        ["histogram_quantile(0.5, sum by (le) (rate(phoenix_batch_requests_bucket[1m])))"],
        "short",
    ),
    (
        "Drift: KS statistic D per feature, last closed window (__score__: the score)",
        ["max by (model, version, feature) (phoenix_drift_statistic)"],
        "short",
    ),
    (
        "Drift: features drifted in the last closed window",
        ["sum by (model, version) (max by (model, version, feature) (phoenix_drift_drifted))"],
        "short",
    ),
    (
        "Drift alarms per hour",
        ["sum by (model) (increase(phoenix_drift_alarms_total[1h]))"],
        "short",
    ),
    (
        "Drift windows per hour by verdict",
        ["sum by (model, verdict) (increase(phoenix_drift_windows_total[1h]))"],
        "short",
    ),
]


def panel(index: int, title: str, exprs: list[str], unit: str) -> dict[str, Any]:
    """One time-series panel, two per row."""
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(65 + i), "expr": expr} for i, expr in enumerate(exprs)],
    }


def overview() -> dict[str, Any]:
    """The pipeline overview dashboard."""
    return {
        "uid": "phoenix-overview",
        "title": "phoenix-stream: pipeline overview",
        "schemaVersion": 39,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "panels": [panel(i, *spec) for i, spec in enumerate(PANELS)],
    }


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {"phoenix-overview.json": json.dumps(overview(), indent=2) + "\n"}


def main() -> None:
    """Write the dashboards."""
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
