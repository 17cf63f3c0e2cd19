"""Prometheus metrics, all in one registry served at ``GET /metrics``.

Counters are incremented once per batch with the batch's count, never once per record
in the hot path; the histograms observed there are ``BatchHistogram`` (a bisect, not
prometheus-client's 5 us ``observe``). Names are the public contract of the dashboards
and alert rules, listed in the README's metric catalogue (a test keeps it complete).
"""

from __future__ import annotations

import importlib.metadata
import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from phoenix_stream.batch_histogram import BatchHistogram

REGISTRY = CollectorRegistry(auto_describe=True)

BUILD_INFO = Gauge(
    "phoenix_build_info",
    "Always 1: the versions this worker runs (phoenix-stream, Python, faust-streaming).",
    ["version", "python", "faust"],
    registry=REGISTRY,
)

REQUESTS = Counter(
    "phoenix_requests_total",
    "Requests taken, by source (kafka, http).",
    ["source"],
    registry=REGISTRY,
)
PREDICTIONS = Counter(
    "phoenix_predictions_total",
    "Predictions served, by model, version and variant.",
    ["model", "version", "variant"],
    registry=REGISTRY,
)
SHADOW_PREDICTIONS = Counter(
    "phoenix_shadow_predictions_total",
    "Shadow predictions scored but not served.",
    ["model", "version"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "phoenix_dead_letters_total",
    "Inputs sent to the dead-letter topic, by error kind.",
    ["kind"],
    registry=REGISTRY,
)
DEFAULTED_PREDICTIONS = Counter(
    "phoenix_defaulted_predictions_total",
    "Predictions where at least one feature fell back to its default.",
    ["model"],
    registry=REGISTRY,
)
DEGRADED_PREDICTIONS = Counter(
    "phoenix_degraded_predictions_total",
    "Predictions served with defaults because the feature store was unreachable.",
    registry=REGISTRY,
)
FEATURE_STORE_ERRORS = Counter(
    "phoenix_feature_store_errors_total",
    "Failed feature-store reads (whole batches).",
    registry=REGISTRY,
)
BATCH_DURATION = BatchHistogram(
    "phoenix_batch_duration_seconds",
    "From taking a group of records (or an HTTP batch) to its outputs being delivered.",
    ("source",),
    (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
# The latency SLO alert compares p99 with 0.25 s: a bucket bound, so it is exact there.
END_TO_END_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.04, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip
END_TO_END_LATENCY = BatchHistogram(
    "phoenix_end_to_end_latency_seconds",
    "From the request's sent_at (or its receipt, without one or with a clock ahead of "
    "ours) to its prediction delivered to the broker (kafka) or answered (http).",
    ("source",),
    END_TO_END_BUCKETS,
    registry=REGISTRY,
)
STAGES = ("decode", "routing", "enrichment", "inference", "emit")
STAGE_DURATION = BatchHistogram(
    "phoenix_stage_duration_seconds",
    "Time one batch spent in a stage: decode, routing, enrichment (the feature read), "
    "inference (feature matrix, ONNX, predictions built) and emit (until delivered).",
    ("stage",),
    (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
HTTP_DURATION = BatchHistogram(
    "phoenix_http_request_duration_seconds",
    "HTTP requests by route template (unmatched for no route), method and status.",
    ("route", "method", "status"),
    (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
    registry=REGISTRY,
)
BATCH_SIZE = BatchHistogram(
    "phoenix_batch_requests",
    "Requests per processed agent batch.",
    (),
    (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
    registry=REGISTRY,
)
PRODUCE_RETRIES = Counter(
    "phoenix_produce_retries_total",
    "Output batches re-sent after a failed delivery.",
    registry=REGISTRY,
)
SINK_ROWS = Counter(
    "phoenix_sink_rows_total", "Prediction rows newly written to PostgreSQL.", registry=REGISTRY
)
SINK_DUPLICATES = Counter(
    "phoenix_sink_duplicates_total",
    "Prediction rows skipped because their request_id was already stored.",
    registry=REGISTRY,
)
SINK_BACKLOG = Gauge(
    "phoenix_sink_backlog_rows",
    "Prediction rows the sink agent holds that are not stored yet (waiting on PostgreSQL).",
    registry=REGISTRY,
)
SINK_WRITE_DURATION = Histogram(
    "phoenix_sink_write_duration_seconds",
    "Duration of one successful batch write to PostgreSQL (COPY and insert), seconds.",
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
SINK_RETRIES = Counter(
    "phoenix_sink_retries_total",
    "PostgreSQL write attempts that failed and were retried.",
    registry=REGISTRY,
)
PROCESSING_ERRORS = Counter(
    "phoenix_processing_errors_total",
    "Records an agent failed on unexpectedly, isolated and dead-lettered (processing_error).",
    ["agent"],
    registry=REGISTRY,
)
AGENT_RETRIES = Counter(
    "phoenix_agent_retries_total",
    "Agent batches retried whole after an outage of a dependency.",
    ["agent"],
    registry=REGISTRY,
)
AGENT_STALLED = Gauge(
    "phoenix_agent_stalled",
    "1 while an agent holds a batch without progress or leaves waiting events untaken.",
    ["agent"],
    registry=REGISTRY,
)
STALLS = Counter(
    "phoenix_stream_stalls_total",
    "Stalls of an agent detected (each counted once, when it begins).",
    ["agent"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "phoenix_consumer_lag_records",
    "Offsets from the group's committed offset to the high-water mark, per assigned "
    "partition of the app's topics (absent while the broker's answers are not trusted).",
    ["topic", "partition"],
    registry=REGISTRY,
)
CONSUMER_LAG_TRUSTED = Gauge(
    "phoenix_consumer_lag_trusted",
    "1 when the last consumer-lag sample succeeded on a broker whose end offsets are trusted.",
    registry=REGISTRY,
)
STALE_ACKS_REFUSED = Counter(
    "phoenix_stale_acks_refused_total",
    "Acks refused for records taken before a rebalance (they are read again, not skipped).",
    registry=REGISTRY,
)
HOLES_REREAD = Counter(
    "phoenix_consumer_holes_reread_total",
    "Records a rebalance left unprocessed below processed ones, sought back and read again.",
    registry=REGISTRY,
)
FETCH_STARVED = Counter(
    "phoenix_consumer_fetch_starved_total",
    "Partitions a fetch answered with no records although records waited past the position.",
    registry=REGISTRY,
)
FETCH_WAIT = Gauge(
    "phoenix_consumer_fetch_wait_seconds",
    "The fetch wait the worker consumer asks for now (longer while fetches starve).",
    registry=REGISTRY,
)
UNDELIVERABLE = Counter(
    "phoenix_undeliverable_total",
    "Output records the broker will never take (too large, rejected), by topic.",
    ["topic"],
    registry=REGISTRY,
)
DEPLOYMENT_GENERATION = Gauge(
    "phoenix_deployment_generation",
    "Generation of the deployment serving each model on this worker.",
    ["model"],
    registry=REGISTRY,
)
DEPLOYMENT_PENDING = Gauge(
    "phoenix_deployment_pending",
    "1 while a newer deployment waits for its versions to load (the previous one serves).",
    ["model"],
    registry=REGISTRY,
)
DEPLOYMENT_CHALLENGER_SHARE = Gauge(
    "phoenix_deployment_challenger_share",
    "Share of traffic the serving deployment routes to its challenger (0 without one).",
    ["model"],
    registry=REGISTRY,
)
DEPLOYMENT_ROLLOUT_STEP = Gauge(
    "phoenix_deployment_rollout_step",
    "Canary step of the serving deployment, counted from 1 (0 when not ramping).",
    ["model"],
    registry=REGISTRY,
)
ROLLOUT_DECISIONS = Counter(
    "phoenix_rollout_decisions_total",
    "Deployment decisions published: canary, advance, promote, rollback, keep; by the "
    "rollout controller (by=controller) or an administrator (by=operator).",
    ["model", "decision", "by"],
    registry=REGISTRY,
)
DEPLOYMENTS_IGNORED = Counter(
    "phoenix_deployments_ignored_total",
    "Deployment records not newer than one already seen (replayed or reordered).",
    ["model"],
    registry=REGISTRY,
)
READY = Gauge(
    "phoenix_dependency_up",
    "1 when a dependency answered the last readiness probe.",
    ["dependency"],
    registry=REGISTRY,
)
MODEL_LOADED = Gauge(
    "phoenix_model_loaded",
    "1 when a model version is loaded and serving, 0 when its last load attempt failed.",
    ["model", "version"],
    registry=REGISTRY,
)
MODEL_LOAD_FAILURES = Counter(
    "phoenix_model_load_failures_total",
    "Failed load attempts of a model version (each retried after a delay).",
    ["model", "version"],
    registry=REGISTRY,
)

FEEDBACK_ROWS = Counter(
    "phoenix_feedback_rows_total",
    "Feedback labels newly stored in PostgreSQL.",
    registry=REGISTRY,
)
FEEDBACK_DUPLICATES = Counter(
    "phoenix_feedback_duplicates_total",
    "Feedback items skipped because their request_id already had a label (the first wins).",
    registry=REGISTRY,
)
FEEDBACK_CONFLICTS = Counter(
    "phoenix_feedback_conflicts_total",
    "Duplicate feedback items whose label differs from the stored one (also duplicates).",
    registry=REGISTRY,
)
FEEDBACK_ORPHANS = Counter(
    "phoenix_feedback_orphans_total",
    "Feedback stored for a request with no stored prediction (yet), counted at insert.",
    registry=REGISTRY,
)
FEEDBACK_ORPHANS_REFUSED = Counter(
    "phoenix_feedback_orphans_refused_total",
    "Kafka feedback for a request with no stored prediction refused (dead-lettered as "
    "orphan_overflow) because PHOENIX_FEEDBACK_ORPHAN_MAX orphans were held.",
    registry=REGISTRY,
)
FEEDBACK_ORPHANS_EXPIRED = Counter(
    "phoenix_feedback_orphans_expired_total",
    "Orphan feedback deleted after PHOENIX_FEEDBACK_ORPHAN_TTL_S without a prediction.",
    registry=REGISTRY,
)
FEEDBACK_LABEL_DELAY = BatchHistogram(
    "phoenix_feedback_label_delay_seconds",
    "From a prediction to its label being stored (labels joined to a stored prediction).",
    (),
    (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0),
    registry=REGISTRY,
)
_EVALUATION_LABELS = ["model", "version", "variant"]
MODEL_LABELLED = Gauge(
    "phoenix_model_labelled",
    "Labelled predictions in the last online evaluation window, rows.",
    _EVALUATION_LABELS,
    registry=REGISTRY,
)
MODEL_ACCURACY = Gauge(
    "phoenix_model_accuracy",
    "Online accuracy of served labels against feedback, last evaluation window.",
    _EVALUATION_LABELS,
    registry=REGISTRY,
)
MODEL_LOG_LOSS = Gauge(
    "phoenix_model_log_loss",
    "Online log loss (natural log) of scores against feedback, last evaluation window.",
    _EVALUATION_LABELS,
    registry=REGISTRY,
)
MODEL_BRIER = Gauge(
    "phoenix_model_brier",
    "Online Brier score of scores against feedback, last evaluation window.",
    _EVALUATION_LABELS,
    registry=REGISTRY,
)
MODEL_AUC = Gauge(
    "phoenix_model_auc",
    "Online ROC AUC, last evaluation window; absent with too few labels of either class.",
    _EVALUATION_LABELS,
    registry=REGISTRY,
)
MODEL_POSITIVE_RATE = Gauge(
    "phoenix_model_positive_rate",
    "Share of true labels that are 1 (feedback), last evaluation window.",
    _EVALUATION_LABELS,
    registry=REGISTRY,
)

_DRIFT_LABELS = ["model", "version", "feature"]  # feature "__score__": the model's score
DRIFT_STATISTIC = Gauge(
    "phoenix_drift_statistic",
    "KS statistic D of a feature in the last closed window against the reference (0..1).",
    _DRIFT_LABELS,
    registry=REGISTRY,
)
DRIFT_P_VALUE = Gauge(
    "phoenix_drift_p_value",
    "KS p-value of a feature in the last closed window, before multiple-testing correction.",
    _DRIFT_LABELS,
    registry=REGISTRY,
)
DRIFT_DRIFTED = Gauge(
    "phoenix_drift_drifted",
    "1 when a feature drifted in the last closed window (corrected p and effect floor).",
    _DRIFT_LABELS,
    registry=REGISTRY,
)
DRIFT_ALARMS = Counter(
    "phoenix_drift_alarms_total",
    "Drift windows that raised an alarm (drift persisted over consecutive windows).",
    ["model"],
    registry=REGISTRY,
)
DRIFT_WINDOWS = Counter(
    "phoenix_drift_windows_total",
    "Closed drift windows reported, by verdict (drift, no_drift, insufficient).",
    ["model", "verdict"],
    registry=REGISTRY,
)
DRIFT_LATE_COUNTS = Counter(
    "phoenix_drift_late_counts_total",
    "Drift counts records for a window already reported (read again, or late): left out.",
    ["model"],
    registry=REGISTRY,
)

RETRAIN_JOBS = Counter(
    "phoenix_retrain_jobs_total",
    "Retrain jobs by model and outcome (deployed, duplicate, too_little_data, failed).",
    ["model", "outcome"],
    registry=REGISTRY,
)
RETRAIN_DURATION = Histogram(
    "phoenix_retrain_duration_seconds",
    "Duration of retrain jobs that ran (read, train, register, deploy), seconds.",
    registry=REGISTRY,
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)


def record_build_info() -> None:
    """Set ``phoenix_build_info`` (called when a worker starts, not at import)."""
    BUILD_INFO.labels(
        version=_version("phoenix-stream"),
        python=platform.python_version(),
        faust=_version("faust-streaming"),
    ).set(1)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
