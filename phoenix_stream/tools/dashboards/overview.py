"""The overview dashboard: is the pipeline serving, how fast, how much fails, who is up."""

from __future__ import annotations

from phoenix_stream.tools.dashboards.promql import (
    MODEL,
    WORKER,
    aggregate,
    quantile,
    series,
    sum_rate,
)
from phoenix_stream.tools.dashboards.spec import Dashboard, Panel, Row, Target

_E2E = "phoenix_end_to_end_latency_seconds"
_UP = 'up{job="phoenix-stream", instance=~"$worker"}'

_GLANCE = Row(
    "At a glance",
    (
        Panel(
            "Workers up",
            "Are all the workers running? Workers whose /metrics Prometheus scraped on its "
            "last try; fewer than you deployed means one is down or unreachable.",
            (Target(f"sum({_UP})"),),
            kind="stat",
            width=4,
            height=4,
        ),
        Panel(
            "Requests per second",
            "How much traffic is the pipeline taking right now? Requests per second from "
            "Kafka and HTTP together.",
            (Target(sum_rate("phoenix_requests_total")),),
            unit="reqps",
            kind="stat",
            width=4,
            height=4,
        ),
        Panel(
            "Predictions per second",
            "Is the traffic being answered? Predictions served per second, all models; "
            "well below requests per second means requests fail or wait.",
            (Target(sum_rate("phoenix_predictions_total", model=True)),),
            unit="reqps",
            kind="stat",
            width=4,
            height=4,
        ),
        Panel(
            "End-to-end latency p99",
            "Are requests answered in time? 99th percentile seconds from a request's "
            "sent_at (or its receipt) to its prediction delivered, all sources.",
            (Target(quantile(0.99, _E2E)),),
            unit="s",
            kind="stat",
            width=4,
            height=4,
        ),
        Panel(
            "Dead letters per request",
            "How much of the input cannot become a prediction? Dead letters per request "
            "taken over 5 minutes (the demo's 2 % malformed records show here).",
            (
                Target(
                    f"{sum_rate('phoenix_dead_letters_total', window='5m')} / "
                    f"{sum_rate('phoenix_requests_total', window='5m')}"
                ),
            ),
            unit="percentunit",
            kind="stat",
            width=4,
            height=4,
        ),
        Panel(
            "Consumer lag",
            "Is the pipeline keeping up with Kafka? Records waiting past the group's "
            "committed offsets, all topics and partitions; growing means falling behind.",
            (Target(aggregate("sum", series("phoenix_consumer_lag_records"))),),
            kind="stat",
            width=4,
            height=4,
        ),
    ),
)

_TRAFFIC = Row(
    "Traffic",
    (
        Panel(
            "Requests per second by source",
            "Where does traffic come from, and did a source stop? Requests taken per "
            "second from Kafka and from the HTTP view.",
            (Target(sum_rate("phoenix_requests_total", by=("source",)), "{{source}}"),),
            unit="reqps",
            min=0,
        ),
        Panel(
            "Predictions per second by model",
            "Which models serve how much? Predictions served per second per model (the "
            "Models and rollouts dashboard splits them by version and variant).",
            (
                Target(
                    sum_rate("phoenix_predictions_total", by=("model",), model=True), "{{model}}"
                ),
            ),
            unit="reqps",
            min=0,
        ),
        Panel(
            "Requests per second by worker",
            "Is the load spread over the workers? Requests per second per worker; one "
            "worker far above the others holds the busy partitions.",
            (Target(sum_rate("phoenix_requests_total", by=("instance",)), "{{instance}}"),),
            unit="reqps",
            min=0,
        ),
        Panel(
            "End-to-end latency p50 / p95 / p99 by source",
            "How long does a request wait for its prediction, typically and at worst? "
            "Seconds from sent_at (or receipt) to delivered prediction, by source.",
            tuple(
                Target(quantile(q, _E2E, by=("source",)), f"p{round(q * 100)} {{{{source}}}}")
                for q in (0.5, 0.95, 0.99)
            ),
            unit="s",
            min=0,
        ),
    ),
)

_ERRORS = Row(
    "Errors",
    (
        Panel(
            "Dead letters per second by kind",
            "What kind of input fails, and since when? Records sent to the dead-letter "
            "topic per second, by error kind (invalid_request, model_error, ...).",
            (Target(sum_rate("phoenix_dead_letters_total", by=("kind",)), "{{kind}}"),),
            unit="ops",
            min=0,
            stacked=True,
        ),
        Panel(
            "Processing errors per second by agent",
            "Is code failing on records, not their input? Records an agent failed on "
            "unexpectedly, isolated and dead-lettered, per second by agent: a bug to fix.",
            (Target(sum_rate("phoenix_processing_errors_total", by=("agent",)), "{{agent}}"),),
            unit="ops",
            min=0,
        ),
    ),
)

_WORKERS = Row(
    "Consumers and workers",
    (
        Panel(
            "Consumer lag by topic",
            "Which topic is the pipeline behind on? Records past the committed offset per "
            "topic, summed over partitions; absent while the broker's offsets are untrusted.",
            (
                Target(
                    aggregate("sum", series("phoenix_consumer_lag_records"), ("topic",)),
                    "{{topic}}",
                ),
            ),
            min=0,
        ),
        Panel(
            "Workers up by instance",
            "Which worker went away, and when? 1 while Prometheus scrapes the worker, 0 "
            "when a scrape fails.",
            (Target(_UP, "{{instance}}"),),
            min=0,
            max=1,
        ),
        Panel(
            "Worker versions",
            "Do all workers run the same build? Workers per phoenix-stream, Python and "
            "Faust version; two rows mean a rolling upgrade in progress (or stuck).",
            (
                Target(
                    aggregate("count", series("phoenix_build_info"), ("version", "python", "faust"))
                ),
            ),
            kind="table",
            width=24,
            height=6,
        ),
    ),
)

DASHBOARD = Dashboard(
    uid="phoenix-overview",
    title="phoenix-stream: overview",
    description="Is the pipeline serving, how fast, how much fails, and are the workers up.",
    rows=(_GLANCE, _TRAFFIC, _ERRORS, _WORKERS),
    variables=(MODEL, WORKER),
    time_from="now-15m",
    refresh="10s",
)
