"""The pipeline internals dashboard: batches, stages, the HTTP view, the PostgreSQL sink,
feedback, the Kafka consumer, the failure policy and the dependencies."""

from __future__ import annotations

from phoenix_stream.tools.dashboards.promql import (
    MODEL,
    WORKER,
    aggregate,
    mean,
    quantile,
    series,
    sum_increase,
    sum_rate,
)
from phoenix_stream.tools.dashboards.spec import Dashboard, Panel, Row, Target

_HTTP = "phoenix_http_request_duration_seconds"
_SERVER_ERROR = 'status=~"5.."'


def _quantiles(
    histogram: str, qs: tuple[float, ...], by: tuple[str, ...] = (), legend: str = ""
) -> tuple[Target, ...]:
    """One target per quantile, legend ``p99 <legend>``."""
    return tuple(
        Target(quantile(q, histogram, by=by), f"p{round(q * 100)} {legend}".strip()) for q in qs
    )


_BATCHES = Row(
    "Batches and stages",
    (
        Panel(
            "Requests per agent batch",
            "Are batches filling up? Requests per processed batch, median, p99 and mean; "
            "small batches under load cost throughput, large ones latency.",
            (
                *_quantiles("phoenix_batch_requests", (0.5, 0.99)),
                Target(mean("phoenix_batch_requests"), "mean"),
            ),
            min=0,
        ),
        Panel(
            "Batch duration p50 / p99 by source",
            "How long does a worker hold a batch? Seconds from taking a batch to its "
            "predictions being delivered, by source.",
            _quantiles("phoenix_batch_duration_seconds", (0.5, 0.99), ("source",), "{{source}}"),
            unit="s",
            min=0,
        ),
        Panel(
            "Stage latency p99 by stage",
            "Which stage makes a slow batch slow? 99th percentile seconds per stage "
            "(decode, routing, enrichment, inference, emit).",
            _quantiles("phoenix_stage_duration_seconds", (0.99,), ("stage",), "{{stage}}"),
            unit="s",
            min=0,
        ),
        Panel(
            "Time spent per stage",
            "Where does the workers' time go? Seconds spent in each stage per second of "
            "wall clock, summed over workers (stacked: the busy share of the workers).",
            (Target(sum_rate("phoenix_stage_duration_seconds_sum", by=("stage",)), "{{stage}}"),),
            unit="s",
            min=0,
            stacked=True,
        ),
    ),
)

_HTTP_ROW = Row(
    "HTTP view",
    (
        Panel(
            "HTTP request duration p99 by route",
            "Is the synchronous API fast enough for its callers? 99th percentile seconds "
            "per route and method.",
            _quantiles(_HTTP, (0.99,), ("route", "method"), "{{method}} {{route}}"),
            unit="s",
            width=8,
            min=0,
        ),
        Panel(
            "HTTP requests per second by route and status",
            "What is the API asked, and what does it answer? Requests per second by route, "
            "method and status code.",
            (
                Target(
                    sum_rate(f"{_HTTP}_count", by=("route", "method", "status")),
                    "{{method}} {{route}} {{status}}",
                ),
            ),
            unit="reqps",
            width=8,
            min=0,
        ),
        Panel(
            "HTTP server errors (5xx) per request",
            "Is the API failing its callers? Share of requests per route answered with a "
            "5xx status, over 5 minutes.",
            (
                Target(
                    sum_rate(f"{_HTTP}_count", _SERVER_ERROR, by=("route",), window="5m")
                    + " / "
                    + sum_rate(f"{_HTTP}_count", by=("route",), window="5m"),
                    "{{route}}",
                ),
            ),
            unit="percentunit",
            width=8,
            min=0,
        ),
    ),
)

_SINK = Row(
    "PostgreSQL sink",
    (
        Panel(
            "Sink rows, duplicates and retries per second",
            "Is every prediction stored once? Rows newly written, rows skipped as already "
            "stored (redelivery after a rebalance) and failed writes retried, per second.",
            (
                Target(sum_rate("phoenix_sink_rows_total"), "written"),
                Target(sum_rate("phoenix_sink_duplicates_total"), "duplicates"),
                Target(sum_rate("phoenix_sink_retries_total"), "retries"),
            ),
            unit="ops",
            width=8,
            min=0,
        ),
        Panel(
            "Sink backlog by worker",
            "Is the sink falling behind the predictions? Rows waiting to be written, per "
            "worker; growing means PostgreSQL is slower than the traffic.",
            (
                Target(
                    aggregate("sum", series("phoenix_sink_backlog_rows"), ("instance",)),
                    "{{instance}}",
                ),
            ),
            width=8,
            min=0,
        ),
        Panel(
            "Sink write latency p50 / p99",
            "Is PostgreSQL slow? Seconds per sink write, median and 99th percentile.",
            _quantiles("phoenix_sink_write_duration_seconds", (0.5, 0.99)),
            unit="s",
            width=8,
            min=0,
        ),
    ),
)

_FEEDBACK = Row(
    "Feedback",
    (
        Panel(
            "Feedback labels per second",
            "Are outcomes arriving for the evaluation? Labels newly stored, duplicates "
            "skipped (the first label wins) and conflicting duplicates, per second.",
            (
                Target(sum_rate("phoenix_feedback_rows_total"), "stored"),
                Target(sum_rate("phoenix_feedback_duplicates_total"), "duplicates"),
                Target(sum_rate("phoenix_feedback_conflicts_total"), "conflicts"),
            ),
            unit="ops",
            width=8,
            min=0,
        ),
        Panel(
            "Orphan feedback per second",
            "Do labels arrive for predictions that were never stored? Orphans stored, "
            "refused at the cap (dead-lettered as orphan_overflow) and expired, per second.",
            (
                Target(sum_rate("phoenix_feedback_orphans_total"), "stored"),
                Target(sum_rate("phoenix_feedback_orphans_refused_total"), "refused"),
                Target(sum_rate("phoenix_feedback_orphans_expired_total"), "expired"),
            ),
            unit="ops",
            width=8,
            min=0,
        ),
        Panel(
            "Label delay p50 / p95 / p99",
            "How long after a prediction does its outcome arrive? Seconds from prediction "
            "to feedback label; the rollout's evidence lags by about this much.",
            _quantiles("phoenix_feedback_label_delay_seconds", (0.5, 0.95, 0.99)),
            unit="s",
            width=8,
            min=0,
        ),
    ),
)

_CONSUMER = Row(
    "Kafka consumer",
    (
        Panel(
            "Consumer lag by partition (top 10)",
            "Which partitions are behind? Records past the committed offset, the ten "
            "largest; one hot partition means a skewed key or a slow worker.",
            (
                Target(
                    "topk(10, "
                    + aggregate(
                        "max", series("phoenix_consumer_lag_records"), ("topic", "partition")
                    )
                    + ")",
                    "{{topic}} [{{partition}}]",
                ),
            ),
            width=8,
            min=0,
        ),
        Panel(
            "Consumer lag trusted",
            "Can the lag figures be believed? 1 when the last lag sample succeeded on a "
            "broker whose end offsets are trusted, per worker.",
            (
                Target(
                    aggregate("min", series("phoenix_consumer_lag_trusted"), ("instance",)),
                    "{{instance}}",
                ),
            ),
            width=8,
            min=0,
            max=1,
        ),
        Panel(
            "Consumer fetch wait",
            "Is the consumer waiting longer for records? The fetch wait it asks the broker "
            "for now, per worker (longer while fetches starve).",
            (
                Target(
                    aggregate("max", series("phoenix_consumer_fetch_wait_seconds"), ("instance",)),
                    "{{instance}}",
                ),
            ),
            unit="s",
            width=8,
            min=0,
        ),
        Panel(
            "Consumer anomalies per second",
            "Is the broker answering oddly? Fetches answered empty although records waited, "
            "records re-read below processed ones after a rebalance, stale acks refused.",
            (
                Target(sum_rate("phoenix_consumer_fetch_starved_total"), "starved fetches"),
                Target(sum_rate("phoenix_consumer_holes_reread_total"), "holes re-read"),
                Target(sum_rate("phoenix_stale_acks_refused_total"), "stale acks refused"),
            ),
            unit="ops",
            width=24,
            min=0,
        ),
    ),
)

_FAILURES = Row(
    "Failure policy and stalls",
    (
        Panel(
            "Stalled agents",
            "Is an agent stuck right now? 1 while an agent holds a batch without progress "
            "or leaves waiting events untaken, per agent and worker.",
            (
                Target(
                    aggregate("max", series("phoenix_agent_stalled"), ("agent", "instance")),
                    "{{agent}} {{instance}}",
                ),
            ),
            width=8,
            min=0,
            max=1,
        ),
        Panel(
            "Stalls in the last hour",
            "How often do agents stall? Stalls detected per agent in the last hour (each "
            "counted once, when it begins).",
            (
                Target(
                    sum_increase("phoenix_stream_stalls_total", by=("agent",)),
                    "{{agent}}",
                ),
            ),
            width=8,
            min=0,
        ),
        Panel(
            "Outage retries per second by agent",
            "Is a dependency down? Agent batches retried whole after an outage of Redis, "
            "PostgreSQL or the broker, per second by agent.",
            (Target(sum_rate("phoenix_agent_retries_total", by=("agent",)), "{{agent}}"),),
            unit="ops",
            width=8,
            min=0,
        ),
        Panel(
            "Produce retries and undeliverable outputs per second",
            "Does the broker take our output? Output batches re-sent after a failed "
            "delivery, and records it will never take (too large, rejected) by topic.",
            (
                Target(sum_rate("phoenix_produce_retries_total"), "produce retries"),
                Target(
                    sum_rate("phoenix_undeliverable_total", by=("topic",)),
                    "undeliverable {{topic}}",
                ),
            ),
            unit="ops",
            min=0,
        ),
    ),
)

_DEPENDENCIES = Row(
    "Dependencies and feature store",
    (
        Panel(
            "Dependencies up",
            "Which dependency is down? 1 when it answered the last readiness probe, "
            "lowest over the workers, per dependency (Redis, PostgreSQL, Kafka, ...).",
            (
                Target(
                    aggregate("min", series("phoenix_dependency_up"), ("dependency",)),
                    "{{dependency}}",
                ),
            ),
            width=8,
            min=0,
            max=1,
        ),
        Panel(
            "Feature store errors and degraded predictions per second",
            "Is Redis failing the enrichment? Failed feature reads (whole batches), and "
            "predictions served on default features because the store was unreachable.",
            (
                Target(sum_rate("phoenix_feature_store_errors_total"), "failed reads"),
                Target(sum_rate("phoenix_degraded_predictions_total"), "degraded predictions"),
            ),
            unit="ops",
            width=8,
            min=0,
        ),
        Panel(
            "Predictions on default features (share)",
            "How many predictions miss a customer's features? Share of each model's "
            "predictions where at least one feature fell back to its default, over 5 minutes.",
            (
                Target(
                    sum_rate(
                        "phoenix_defaulted_predictions_total",
                        by=("model",),
                        model=True,
                        window="5m",
                    )
                    + " / "
                    + sum_rate("phoenix_predictions_total", by=("model",), model=True, window="5m"),
                    "{{model}}",
                ),
            ),
            unit="percentunit",
            width=8,
            min=0,
        ),
    ),
)

DASHBOARD = Dashboard(
    uid="phoenix-pipeline",
    title="phoenix-stream: pipeline internals",
    description="Batches, stages, the HTTP view, the PostgreSQL sink, feedback, the Kafka "
    "consumer, the failure policy and the dependencies: where to look when the overview "
    "shows a problem.",
    rows=(_BATCHES, _HTTP_ROW, _SINK, _FEEDBACK, _CONSUMER, _FAILURES, _DEPENDENCIES),
    variables=(MODEL, WORKER),
    time_from="now-1h",
    refresh="10s",
)
