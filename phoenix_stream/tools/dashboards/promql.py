"""PromQL for the dashboards: selectors filtered by the template variables, and the
substitution that turns a panel's query into one a plain Prometheus answers.

Every query filters by worker (``instance=~"$worker"``) and, where the metric has a
``model`` label, by model (``model=~"$model"``). Windows are fixed (``[1m]`` for rates,
``[1h]`` for rare events) rather than ``$__rate_interval``: the scrape interval is 5 s
(deploy/prometheus.yml), so a minute holds 12 samples, and the same text runs unchanged
against Prometheus' HTTP API in the integration test. The cost: over a range of days
Grafana's step outgrows the minute and a panel samples the rate instead of averaging it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from phoenix_stream.tools.dashboards.spec import Variable

RATE_WINDOW = "1m"
"""Window of ``rate()`` and ``increase()`` on busy counters and histograms."""

WORKER = Variable(
    name="worker",
    label="Worker",
    query='label_values(up{job="phoenix-stream"}, instance)',
    description="Workers scraped by Prometheus (job phoenix-stream), by instance.",
)
MODEL = Variable(
    name="model",
    label="Model",
    query="label_values(phoenix_predictions_total, model)",
    description="Models that served predictions.",
)
FEATURE = Variable(
    name="feature",
    label="Feature",
    query="label_values(phoenix_drift_statistic, feature)",
    description="Features with a drift statistic (__score__: the model's score).",
)

PLAIN_PROMETHEUS: Mapping[str, str] = {
    "worker": ".*",
    "model": ".*",
    "feature": ".*",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}
"""Values for Grafana's variables that make a dashboard query a plain Prometheus query."""

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def series(metric: str, *matchers: str, model: bool = False) -> str:
    """``metric{instance=~"$worker"[, model=~"$model"], matchers...}``."""
    parts = ['instance=~"$worker"', *(['model=~"$model"'] if model else []), *matchers]
    return f"{metric}{{{', '.join(parts)}}}"


def aggregate(operator: str, inner: str, by: tuple[str, ...] = ()) -> str:
    """``operator by (labels) (inner)``, or ``operator(inner)`` without labels."""
    return f"{operator} by ({', '.join(by)}) ({inner})" if by else f"{operator}({inner})"


def sum_rate(
    metric: str,
    *matchers: str,
    by: tuple[str, ...] = (),
    model: bool = False,
    window: str = RATE_WINDOW,
) -> str:
    """Per-second rate of a counter, summed over workers (and grouped ``by``)."""
    return aggregate("sum", f"rate({series(metric, *matchers, model=model)}[{window}])", by)


def sum_increase(
    metric: str,
    *matchers: str,
    by: tuple[str, ...] = (),
    model: bool = False,
    window: str = "1h",
) -> str:
    """Count of a counter's events in the last ``window``, summed over workers."""
    return aggregate("sum", f"increase({series(metric, *matchers, model=model)}[{window}])", by)


def quantile(
    q: float,
    histogram: str,
    *matchers: str,
    by: tuple[str, ...] = (),
    model: bool = False,
    window: str = RATE_WINDOW,
) -> str:
    """The ``q`` quantile of a histogram over all workers, per ``by`` group."""
    buckets = sum_rate(f"{histogram}_bucket", *matchers, by=("le", *by), model=model, window=window)
    return f"histogram_quantile({q}, {buckets})"


def mean(
    histogram: str, *matchers: str, by: tuple[str, ...] = (), window: str = RATE_WINDOW
) -> str:
    """A histogram's mean observation over ``window``: its ``_sum`` over its ``_count``."""
    total = sum_rate(f"{histogram}_sum", *matchers, by=by, window=window)
    count = sum_rate(f"{histogram}_count", *matchers, by=by, window=window)
    return f"{total} / {count}"


def substitute(expr: str, values: Mapping[str, str] = PLAIN_PROMETHEUS) -> str:
    """``expr`` with every Grafana variable (``$name``, ``${name}``) replaced from ``values``.

    A variable missing from ``values`` raises ``KeyError`` naming it: a query must not
    reach Prometheus with a ``$`` left in it.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(value, expr)
