"""The models and rollouts dashboard: who serves what, how each variant does on labelled
outcomes, where a rollout stands and what it decided, with deployments as annotations."""

from __future__ import annotations

from phoenix_stream.tools.dashboards.promql import (
    MODEL,
    WORKER,
    aggregate,
    series,
    sum_increase,
    sum_rate,
)
from phoenix_stream.tools.dashboards.spec import Annotation, Dashboard, Panel, Row, Target

_VARIANT = ("model", "version", "variant")
_VARIANT_LEGEND = "{{model}} {{version}} ({{variant}})"


def _online(metric: str, title: str, question: str, unit: str = "short") -> Panel:
    """One online evaluation gauge per model, version and variant."""
    return Panel(
        title,
        f"{question} Last online evaluation window (served predictions joined with their "
        "feedback labels), per model, version and variant.",
        (Target(aggregate("max", series(metric, model=True), _VARIANT), _VARIANT_LEGEND),),
        unit=unit,
        width=8,
    )


_SPLIT = Row(
    "Traffic split",
    (
        Panel(
            "Prediction share per variant",
            "Does the challenger get the share of traffic its deployment asks for? Share of "
            "each model's predictions served by its champion and its challenger.",
            (
                Target(
                    f"{sum_rate('phoenix_predictions_total', by=('model', 'variant'), model=True)}"
                    " / on (model) group_left "
                    f"{sum_rate('phoenix_predictions_total', by=('model',), model=True)}",
                    "{{model}} {{variant}}",
                ),
            ),
            unit="percentunit",
            min=0,
            max=1,
            stacked=True,
        ),
        Panel(
            "Predictions per second by version and variant",
            "Which model versions serve traffic right now? Predictions served per second, "
            "by model, version and variant; a version leaving is a promotion or rollback.",
            (
                Target(
                    sum_rate("phoenix_predictions_total", by=_VARIANT, model=True), _VARIANT_LEGEND
                ),
            ),
            unit="reqps",
            min=0,
        ),
        Panel(
            "Shadow predictions per second",
            "Is the shadow version being scored? Predictions computed in shadow (never "
            "served) per second, by model and version.",
            (
                Target(
                    sum_rate(
                        "phoenix_shadow_predictions_total", by=("model", "version"), model=True
                    ),
                    "{{model}} {{version}}",
                ),
            ),
            unit="reqps",
            min=0,
        ),
    ),
)

_ROLLOUT = Row(
    "Rollout",
    (
        Panel(
            "Challenger share (configured)",
            "What share of entities does each deployment route to its challenger? The "
            "deployment's share (0 to 1); compare it with the served share above.",
            (
                Target(
                    aggregate(
                        "max", series("phoenix_deployment_challenger_share", model=True), ("model",)
                    ),
                    "{{model}}",
                ),
            ),
            unit="percentunit",
            width=8,
            min=0,
            max=1,
        ),
        Panel(
            "Rollout step",
            "How far along its canary steps is each rollout? The current canary step, "
            "counted from 1; 0 when not ramping.",
            (
                Target(
                    aggregate(
                        "max", series("phoenix_deployment_rollout_step", model=True), ("model",)
                    ),
                    "{{model}}",
                ),
            ),
            width=8,
        ),
        Panel(
            "Rollout decisions in the last hour",
            "What did the rollout controller decide, and how often? Decisions (promote, "
            "rollback, keep, ...) per model in the last hour.",
            (
                Target(
                    sum_increase(
                        "phoenix_rollout_decisions_total", by=("model", "decision"), model=True
                    ),
                    "{{model}} {{decision}}",
                ),
            ),
            width=8,
            min=0,
        ),
    ),
)

_ONLINE = Row(
    "Online metrics per variant",
    (
        _online(
            "phoenix_model_accuracy",
            "Accuracy",
            "Is the challenger more accurate than the champion? Share of served labels that "
            "match the outcome.",
            "percentunit",
        ),
        _online(
            "phoenix_model_log_loss",
            "Log loss",
            "Are the scores well calibrated? Log loss of scores against outcomes (natural "
            "log, lower is better).",
        ),
        _online(
            "phoenix_model_brier",
            "Brier score",
            "How far are the scores from the outcomes? Mean squared error of the score "
            "(lower is better).",
        ),
        _online(
            "phoenix_model_auc",
            "ROC AUC",
            "Does the model rank positives above negatives? ROC AUC (absent while either "
            "class has too few labels).",
        ),
        _online(
            "phoenix_model_labelled",
            "Labelled predictions",
            "How much evidence do these metrics rest on? Predictions with a feedback label, rows.",
        ),
        _online(
            "phoenix_model_positive_rate",
            "Positive label rate",
            "Did the mix of outcomes change? Share of feedback labels that are 1.",
            "percentunit",
        ),
    ),
)

_DEPLOYMENTS = Row(
    "Deployments and model versions",
    (
        Panel(
            "Deployment generation (newest and oldest worker)",
            "Have all workers taken the latest deployment? Generation of the deployment "
            "serving each model on the newest and the oldest worker; a gap that stays means "
            "a worker is stuck.",
            (
                Target(
                    aggregate(
                        "max", series("phoenix_deployment_generation", model=True), ("model",)
                    ),
                    "{{model}} newest",
                ),
                Target(
                    aggregate(
                        "min", series("phoenix_deployment_generation", model=True), ("model",)
                    ),
                    "{{model}} oldest",
                ),
            ),
            width=8,
        ),
        Panel(
            "Workers with a deployment pending",
            "Is a new deployment waiting for its versions to load? Workers where it waits "
            "(the previous deployment serves meanwhile), per model.",
            (
                Target(
                    aggregate("sum", series("phoenix_deployment_pending", model=True), ("model",)),
                    "{{model}}",
                ),
            ),
            width=8,
            min=0,
        ),
        Panel(
            "Deployment records ignored in the last hour",
            "Are stale deployment records arriving? Records not newer than one already seen "
            "(replayed or reordered), per model; harmless, unless it keeps rising.",
            (
                Target(
                    sum_increase("phoenix_deployments_ignored_total", by=("model",), model=True),
                    "{{model}}",
                ),
            ),
            width=8,
            min=0,
        ),
        Panel(
            "Model versions loaded",
            "Is every version a deployment names loaded on every worker? 1 when loaded and "
            "serving, 0 when its last load failed on at least one worker.",
            (
                Target(
                    aggregate(
                        "min", series("phoenix_model_loaded", model=True), ("model", "version")
                    ),
                    "{{model}} {{version}}",
                ),
            ),
            min=0,
            max=1,
        ),
        Panel(
            "Model load failures in the last 5 minutes",
            "Why does a deployment stay pending? Failed load attempts per model version "
            "(each retried after a delay); see the worker log for the reason.",
            (
                Target(
                    sum_increase(
                        "phoenix_model_load_failures_total",
                        by=("model", "version"),
                        model=True,
                        window="5m",
                    ),
                    "{{model}} {{version}}",
                ),
            ),
            min=0,
        ),
    ),
)

DASHBOARD = Dashboard(
    uid="phoenix-models",
    title="phoenix-stream: models and rollouts",
    description="Who serves what, how each variant does on labelled outcomes, and where "
    "each rollout stands; deployment changes and rollout decisions are annotations.",
    rows=(_SPLIT, _ROLLOUT, _ONLINE, _DEPLOYMENTS),
    variables=(MODEL, WORKER),
    annotations=(
        Annotation(
            name="Deployment changes",
            expr=aggregate(
                "max",
                f"changes({series('phoenix_deployment_generation', model=True)}[1m])",
                ("model",),
            )
            + " > 0",
            title="New deployment of {{model}}",
            tags="model",
            color="blue",
        ),
        Annotation(
            name="Rollout decisions",
            expr=sum_increase(
                "phoenix_rollout_decisions_total", by=("model", "decision"), model=True, window="1m"
            )
            + " > 0",
            title="Rollout {{decision}}: {{model}}",
            tags="model,decision",
            color="orange",
        ),
    ),
    time_from="now-6h",
    refresh="30s",
)
