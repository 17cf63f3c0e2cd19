"""The benchmark's arithmetic: rates from output timestamps, percentiles, targets, table."""

from __future__ import annotations

import math
from typing import Any

import pytest

from phoenix_stream.tools.bench.stats import (
    OutputStamp,
    check_targets,
    format_table,
    percentile,
    ratio,
    throughput,
)


def test_throughput_of_per_record_outputs_starts_at_the_first_output() -> None:
    # 1001 outputs one ms apart: the first marks the start, 1000 follow in 1 s.
    stamps = [OutputStamp(1_000_000 + i) for i in range(1001)]
    rate = throughput(stamps)
    assert rate.outputs == 1001
    assert rate.counted == 1000
    assert rate.span_s == pytest.approx(1.0)
    assert rate.rps == pytest.approx(1000.0)


def test_throughput_excludes_the_whole_first_batch() -> None:
    # Batch 1 (start-up, 500 outputs) ends at t=10.000 s; two more batches of 500
    # end at 10.250 s and 10.500 s: 1000 requests in 0.5 s.
    stamps = (
        [OutputStamp(9_990 + i % 10, batch=9.9) for i in range(500)]
        + [OutputStamp(10_000, batch=9.9)]
        + [OutputStamp(10_240 + i % 11, batch=10.0) for i in range(500)]
        + [OutputStamp(10_400 + i % 101, batch=10.25) for i in range(500)]
    )
    rate = throughput(stamps)
    assert rate.counted == 1000
    assert rate.span_s == pytest.approx(0.5)
    assert rate.rps == pytest.approx(2000.0)


def test_throughput_of_a_single_batch_is_timed_from_its_received_at() -> None:
    stamps = [OutputStamp(100_500, batch=100.0) for _ in range(1000)]
    rate = throughput(stamps)
    assert rate.counted == 1000
    assert rate.span_s == pytest.approx(0.5)
    assert rate.rps == pytest.approx(2000.0)


def test_throughput_without_a_span_is_zero_not_an_error() -> None:
    assert throughput([]).rps == 0.0
    assert throughput([OutputStamp(5), OutputStamp(5)]).rps == 0.0


def test_throughput_ignores_arrival_order() -> None:
    ordered = [OutputStamp(1000 + 2 * i) for i in range(101)]
    assert throughput(list(reversed(ordered))) == throughput(ordered)


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 1.0), (50, 50.5), (99, 99.01), (100, 100.0)],
)
def test_percentile_interpolates_linearly(q: float, expected: float) -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_edge_cases() -> None:
    assert math.isnan(percentile([], 50))
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 101)


def test_ratio_guards_a_zero_denominator() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(3.0, 0.0) == 0.0


def _result(**changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "baseline_rps": 20_000.0,
        "faust_floor_rps": 3_000.0,
        "pipeline_rps": 9_000.0,
        "batch_pipeline_rps": 25_000.0,
        "floor_ratio": 3.0,
        "batch_ratio_vs_baseline": 1.25,
        "ratio_vs_baseline": 0.45,
        "e2e_p50_ms": 12.0,
        "e2e_p99_ms": 40.0,
        "e2e_rate_rps": 500.0,
        "e2e_samples": 4500,
        "http_rps": 5_000.0,
        "http_baseline_rps": 6_000.0,
        "http_ratio": 0.833,
        "http_p99_ms": 9.0,
        "http_baseline_p99_ms": 8.0,
        "http_connections": 32,
        "worker_ready_s": 4.6,
        "worker_ready_samples_s": [4.5, 4.6, 4.8],
        "batch": 100,
        "cores": 2,
        "load_average": [0.5, 0.4, 0.3],
        "baseline_requests": 60_000,
        "faust_floor_requests": 60_000,
        "pipeline_requests": 60_000,
        "batch_pipeline_requests": 300_000,
        "e2e_breakdown": {"to_worker_p50_ms": 6.0, "in_worker_p50_ms": 1.0},
        "health_flood_records": 80,
        "health_flood_batch": 1000,
        "health_flood_rps": 30_000.0,
        "health_flood_p50_ms": 2.0,
        "health_flood_p99_ms": 30.0,
        "health_flood_max_ms": 45.0,
        "health_flood_probes": 150,
        "health_flood_errors": 0,
        "health_idle_p99_ms": 1.5,
        "health_idle_probes": 250,
    }
    result.update(changes)
    return result


def test_targets_met_and_missed() -> None:
    assert all(t.met for t in check_targets(_result()))
    verdicts = {
        t.name: t.met
        for t in check_targets(_result(floor_ratio=2.4, e2e_p99_ms=61.0, worker_ready_s=10.5))
    }
    assert [name for name, met in verdicts.items() if not met] == [
        "pipeline >= 2.5x Faust floor",
        "e2e p50 <= 20 ms, p99 <= 60 ms at 500 req/s",
        "worker ready <= 10 s",
    ]


def test_a_missing_latency_is_not_a_met_target() -> None:
    targets = {t.name: t.met for t in check_targets(_result(e2e_p50_ms=0.0, e2e_p99_ms=0.0))}
    assert targets["e2e p50 <= 20 ms, p99 <= 60 ms at 500 req/s"] is False


def test_table_shows_every_phase_ratio_and_verdict() -> None:
    table = format_table(_result(batch_pipeline_complete=False))
    lines = table.splitlines()
    baseline = next(line for line in lines if line.startswith("(a)"))
    batch = next(line for line in lines if line.startswith("(d)"))
    assert baseline.split()[-2:] == ["20,000", "1.00"]
    assert "batch records x100" in batch
    assert batch.split()[-3:] == ["25,000", "1.25", "(incomplete)"]
    assert "p50 12.0 ms, p99 40.0 ms" in table
    assert "to_worker 6.0, in_worker 1.0" in table
    assert "worker 5,000 req/s" in table and "bare aiohttp 6,000 req/s" in table
    assert table.count(" met") == 6
    assert "MISSED" in format_table(_result(http_ratio=0.5))


HEALTH = "/health p99 <= 50 ms while flooded"


@pytest.mark.parametrize(
    ("changes", "met", "measured"),
    [
        ({}, True, "30.0 ms"),
        ({"health_flood_p99_ms": 50.0}, True, "50.0 ms"),
        ({"health_flood_p99_ms": 50.1}, False, "50.1 ms"),
        ({"health_flood_errors": 2}, False, "30.0 ms, 2 failed"),
        ({"health_flood_p99_ms": None}, False, "not measured"),
    ],
)
def test_health_target(changes: dict[str, Any], met: bool, measured: str) -> None:
    target = next(t for t in check_targets(_result(**changes)) if t.name == HEALTH)
    assert (target.met, target.measured) == (met, measured)


def test_a_result_without_the_health_phase_misses_its_target() -> None:
    result = {k: v for k, v in _result().items() if not k.startswith("health_")}
    target = next(t for t in check_targets(result) if t.name == HEALTH)
    assert (target.met, target.measured) == (False, "not measured")
    assert "/health" not in format_table(result).split("targets")[0]


def test_table_shows_the_health_figures() -> None:
    line = next(
        line for line in format_table(_result()).splitlines() if line.startswith("GET /health")
    )
    assert "80 records x1000, 30,000 req/s" in line
    assert "p50 2.0 ms, p99 30.0 ms, max 45.0 ms (150 probes)" in line
    assert "idle p99 1.5 ms (250 probes)" in line
    assert "p99 n/a" in format_table(_result(health_flood_p99_ms=None))
