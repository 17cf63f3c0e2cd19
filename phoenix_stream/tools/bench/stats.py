"""Pure arithmetic of the benchmark: rates from Kafka timestamps, percentiles, the table.

Throughput is measured on the output side only. Each output record carries the Kafka
CreateTime (ms) stamped by the producer of the process under test, and, where the
process writes one, the ``received_at`` of the batch that made it. The first batch marks
the start: its last timestamp is the moment the process had taken, scored and sent its
first batch, so start-up and the first fetch are excluded; every later output counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OutputStamp",
    "Target",
    "Throughput",
    "check_targets",
    "format_table",
    "percentile",
    "throughput",
]


@dataclass(frozen=True, slots=True)
class OutputStamp:
    """One output record: Kafka timestamp (ms since epoch) and its batch key, if known.

    ``batch`` is the ``received_at`` (seconds) written by the batch that produced the
    record; None when the output does not say (a pass-through copies its input).
    """

    timestamp_ms: int
    batch: float | None = None


@dataclass(frozen=True, slots=True)
class Throughput:
    """A measured rate: outputs counted, over how long, in requests per second."""

    outputs: int  # all outputs seen
    counted: int  # outputs after the first batch
    span_s: float  # from the end of the first batch to the last output, seconds
    rps: float  # counted / span_s; 0.0 when there is no span to measure


def throughput(stamps: Sequence[OutputStamp]) -> Throughput:
    """Requests per second of ``stamps`` after the first batch (see the module docstring).

    The first batch is every output sharing the earliest output's batch key, or just
    that output when it has none. When a single batch made every output, the span starts
    at that batch's ``received_at`` instead (same clock: the process under test).
    """
    if not stamps:
        return Throughput(0, 0, 0.0, 0.0)
    first = min(stamps, key=lambda s: s.timestamp_ms)
    if first.batch is None:
        first_batch = [first]
    else:
        first_batch = [s for s in stamps if s.batch == first.batch]
    end_ms = max(s.timestamp_ms for s in stamps)
    if len(first_batch) == len(stamps) and first.batch is not None:
        # One batch did everything: time it from its own received_at instead.
        span_s = end_ms / 1000.0 - first.batch
        return Throughput(
            len(stamps), len(stamps), span_s, len(stamps) / span_s if span_s > 0 else 0.0
        )
    start_ms = max(s.timestamp_ms for s in first_batch)
    counted = len(stamps) - len(first_batch)
    span_s = (end_ms - start_ms) / 1000.0
    rps = counted / span_s if span_s > 0 and counted > 0 else 0.0
    return Throughput(len(stamps), counted, span_s, rps)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; NaN for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0.0 when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Target:
    """One target of the issue: what it asks, the measured value as text, whether met."""

    name: str
    measured: str
    met: bool


# docs/architecture.md section 7: the event loop never stalls /health for long
HEALTH_FLOOD_P99_MS = 50.0


def check_targets(result: Mapping[str, Any]) -> list[Target]:
    """The issue's targets evaluated on a bench result (the JSON dict)."""
    p50, p99 = float(result["e2e_p50_ms"]), float(result["e2e_p99_ms"])
    ready = float(result["worker_ready_s"])
    return [
        Target(
            "pipeline >= 2.5x Faust floor",
            f"{float(result['floor_ratio']):.2f}x",
            float(result["floor_ratio"]) >= 2.5,
        ),
        Target(
            "batch pipeline >= baseline",
            f"{float(result['batch_ratio_vs_baseline']):.2f}x",
            float(result["batch_ratio_vs_baseline"]) >= 1.0,
        ),
        Target(
            f"e2e p50 <= 20 ms, p99 <= 60 ms at {float(result['e2e_rate_rps']):.0f} req/s",
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
            0 < p50 <= 20.0 and 0 < p99 <= 60.0,
        ),
        Target(
            "HTTP >= 0.8x bare aiohttp",
            f"{float(result['http_ratio']):.2f}x",
            float(result["http_ratio"]) >= 0.8,
        ),
        Target("worker ready <= 10 s", f"{ready:.1f} s", 0 < ready <= 10.0),
        _health_target(result),
    ]


def _health_target(result: Mapping[str, Any]) -> Target:
    """/health p99 while flooded; missed when not measured or when any probe failed."""
    name = f"/health p99 <= {HEALTH_FLOOD_P99_MS:.0f} ms while flooded"
    p99 = result.get("health_flood_p99_ms")
    if p99 is None:
        return Target(name, "not measured", False)
    errors = int(result.get("health_flood_errors", 0))
    measured = f"{float(p99):.1f} ms" + (f", {errors} failed" if errors else "")
    return Target(name, measured, 0 < float(p99) <= HEALTH_FLOOD_P99_MS and errors == 0)


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = cells
    return "  ".join(
        [first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
    ).rstrip()


def _breakdown(parts: Any) -> str:
    if not isinstance(parts, Mapping) or not parts:
        return ""
    text = ", ".join(
        f"{name.removesuffix('_p50_ms')} {float(value):.1f}" for name, value in parts.items()
    )
    return f"\n  p50 parts (ms): {text}"


def _ms_text(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1f} ms"


def _health_lines(result: Mapping[str, Any]) -> list[str]:
    if "health_flood_probes" not in result:
        return []  # a result of a bench without phase (f)
    rps = float(result.get("health_flood_rps", 0.0))
    return [
        f"GET /health while flooded ({result['health_flood_records']} records "
        f"x{result['health_flood_batch']}, {rps:,.0f} req/s): "
        f"p50 {_ms_text(result['health_flood_p50_ms'])}, "
        f"p99 {_ms_text(result['health_flood_p99_ms'])}, "
        f"max {_ms_text(result['health_flood_max_ms'])} "
        f"({result['health_flood_probes']} probes); idle p99 "
        f"{_ms_text(result['health_idle_p99_ms'])} ({result['health_idle_probes']} probes)"
    ]


def format_table(result: Mapping[str, Any]) -> str:
    """The human-readable summary of a bench result (the JSON dict), one string."""
    base = float(result["baseline_rps"])
    phases = [
        ("(a) hand-written aiokafka loop", "baseline"),
        ("(b) stock Faust pass-through", "faust_floor"),
        ("(c) pipeline, single-request records", "pipeline"),
        (f"(d) pipeline, batch records x{result['batch']}", "batch_pipeline"),
    ]
    widths = (38, 9, 10, 11)
    lines = [
        f"phoenix-stream bench: {result['cores']} cores, load average "
        f"{result['load_average']} at start",
        _row(("throughput phase", "requests", "req/s", "x baseline"), widths),
    ]
    for label, key in phases:
        rps = float(result[f"{key}_rps"])
        flag = "" if result.get(f"{key}_complete", True) else "  (incomplete)"
        lines.append(
            _row(
                (label, str(result[f"{key}_requests"]), f"{rps:,.0f}", f"{ratio(rps, base):.2f}"),
                widths,
            )
            + flag
        )
    lines += [
        "",
        f"e2e latency at {float(result['e2e_rate_rps']):.0f} req/s: p50 "
        f"{float(result['e2e_p50_ms']):.1f} ms, p99 {float(result['e2e_p99_ms']):.1f} ms "
        f"({result['e2e_samples']} samples)" + _breakdown(result.get("e2e_breakdown")),
        f"HTTP POST /v1/predict, {result['http_connections']} connections: worker "
        f"{float(result['http_rps']):,.0f} req/s (p99 {float(result['http_p99_ms']):.1f} ms), "
        f"bare aiohttp {float(result['http_baseline_rps']):,.0f} req/s "
        f"(p99 {float(result['http_baseline_p99_ms']):.1f} ms)",
        *_health_lines(result),
        f"worker ready: {float(result['worker_ready_s']):.1f} s "
        f"(median of {len(result['worker_ready_samples_s'])} workers)",
        "",
        "targets",
    ]
    for target in check_targets(result):
        lines.append(
            f"  {target.name:<46} {target.measured:>24}  {'met' if target.met else 'MISSED'}"
        )
    return "\n".join(lines)
