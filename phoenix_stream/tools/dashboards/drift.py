"""The drift dashboard: which features moved away from the training reference, what the
windows concluded, which alarms fired and how the retraining they started went."""

from __future__ import annotations

from phoenix_stream.tools.dashboards.promql import (
    FEATURE,
    MODEL,
    WORKER,
    aggregate,
    quantile,
    series,
    sum_increase,
)
from phoenix_stream.tools.dashboards.spec import Annotation, Dashboard, Panel, Row, Target

_FEATURE_LABELS = ("model", "version", "feature")
_FEATURE_LEGEND = "{{model}} {{version}} {{feature}}"
_ONLY_FEATURE = 'feature=~"$feature"'
_RETRAIN = "phoenix_retrain_duration_seconds"


def _per_feature(metric: str, operator: str = "max") -> str:
    """A drift gauge per model, version and feature (each worker reports the same window)."""
    return aggregate(operator, series(metric, _ONLY_FEATURE, model=True), _FEATURE_LABELS)


_FEATURES = Row(
    "Drift per feature (last closed window)",
    (
        Panel(
            "KS statistic D per feature",
            "How far has each feature moved from the training reference? Kolmogorov-Smirnov "
            "D of the last closed window, 0 (same) to 1 (disjoint); __score__ is the "
            "model's score.",
            (Target(_per_feature("phoenix_drift_statistic"), _FEATURE_LEGEND),),
            min=0,
            max=1,
        ),
        Panel(
            "KS p-value per feature",
            "Is the move more than chance? KS p-value of the last closed window, before the "
            "multiple-testing correction (log scale: lower is stronger evidence).",
            (Target(_per_feature("phoenix_drift_p_value", "min"), _FEATURE_LEGEND),),
            log_scale=True,
        ),
        Panel(
            "Drifted features per model version",
            "How many features drifted in the last closed window? Features flagged after "
            "the correction and the effect-size floor, per model version.",
            (
                Target(
                    aggregate("sum", _per_feature("phoenix_drift_drifted"), ("model", "version")),
                    "{{model}} {{version}}",
                ),
            ),
            min=0,
        ),
        Panel(
            "Features drifted now",
            "Which features are flagged as drifted right now? One row per model, version "
            "and feature whose last closed window drifted.",
            (Target(f"{_per_feature('phoenix_drift_drifted')} == 1"),),
            kind="table",
        ),
    ),
)

_WINDOWS = Row(
    "Windows and alarms",
    (
        Panel(
            "Drift windows in the last hour by verdict",
            "What did the closed windows conclude? Windows per verdict (drift, no_drift, "
            "insufficient: too few predictions to test) per model in the last hour.",
            (
                Target(
                    sum_increase(
                        "phoenix_drift_windows_total", by=("model", "verdict"), model=True
                    ),
                    "{{model}} {{verdict}}",
                ),
            ),
            width=8,
            min=0,
        ),
        Panel(
            "Drift alarms in the last hour",
            "Did drift persist long enough to act on? Alarms (drift over consecutive "
            "windows, each starting a retraining) per model in the last hour.",
            (
                Target(
                    sum_increase("phoenix_drift_alarms_total", by=("model",), model=True),
                    "{{model}}",
                ),
            ),
            width=8,
            min=0,
        ),
        Panel(
            "Late drift counts in the last hour",
            "Are workers' counts arriving after their window closed? Counts left out of a "
            "window already reported (read again after a rebalance, or late), per model.",
            (
                Target(
                    sum_increase("phoenix_drift_late_counts_total", by=("model",), model=True),
                    "{{model}}",
                ),
            ),
            width=8,
            min=0,
        ),
    ),
)

_RETRAINING = Row(
    "Retraining",
    (
        Panel(
            "Retrain jobs in the last hour by outcome",
            "Did the retraining an alarm asked for deploy a new version? Jobs per model and "
            "outcome (deployed, duplicate, too_little_data, failed) in the last hour.",
            (
                Target(
                    sum_increase("phoenix_retrain_jobs_total", by=("model", "outcome"), model=True),
                    "{{model}} {{outcome}}",
                ),
            ),
            min=0,
        ),
        Panel(
            "Retrain duration p50 / p95 (last hour)",
            "How long does a retraining take from request to deployment? Seconds of the "
            "jobs that ran (read, train, register, deploy), over the last hour.",
            tuple(
                Target(quantile(q, _RETRAIN, window="1h"), f"p{round(q * 100)}")
                for q in (0.5, 0.95)
            ),
            unit="s",
            min=0,
        ),
    ),
)

DASHBOARD = Dashboard(
    uid="phoenix-drift",
    title="phoenix-stream: drift and retraining",
    description="Which features drifted from the training reference, what the windows "
    "concluded, which alarms fired, and how the retraining went; alarms and retrain "
    "outcomes are annotations.",
    rows=(_FEATURES, _WINDOWS, _RETRAINING),
    variables=(MODEL, WORKER, FEATURE),
    annotations=(
        Annotation(
            name="Drift alarms",
            expr=sum_increase("phoenix_drift_alarms_total", by=("model",), model=True, window="1m")
            + " > 0",
            title="Drift alarm: {{model}}",
            tags="model",
            color="red",
        ),
        Annotation(
            name="Retrain jobs",
            expr=sum_increase(
                "phoenix_retrain_jobs_total", by=("model", "outcome"), model=True, window="1m"
            )
            + " > 0",
            title="Retrain {{outcome}}: {{model}}",
            tags="model,outcome",
            color="purple",
        ),
    ),
    time_from="now-6h",
    refresh="30s",
)
