"""Simulate the drift rule on the project's synthetic credit data and print the README table.

Reference: ``make_dataset(5,000 rows, seed 0)`` and the model's scores on it (the known
default probability stands in for the model). Windows hold 1,000 rows.

- Null windows: fresh rows of ``make_dataset`` with other seeds, closed one after the
  other by one monitor; counted per 1,000 windows for plain KS (p < 0.05 on any of the
  11 tests), Bonferroni alone, Bonferroni with the effect floor, and the full rule
  (floor + persistence 2: the alarms).
- Drift runs: 2 null windows, then windows whose request features come from
  ``sample_request_features(rng, 1,000, shift)``: sudden (0.5 at once) or gradual
  (0.1, 0.2, ... 0.5 over 5 windows, then 0.5). Profile features are drawn, with
  replacement, from a pool of 100,000 fresh rows (making a profile costs ~6 us). The
  delay is the 1-based index, from the shift's first window, of the first window that
  alarms; a run with no alarm in 10 windows is missed.

Usage: python scripts/simulate_drift.py [--null-windows 5000] [--runs 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from phoenix_stream.drift.histograms import SCORE, Bins
from phoenix_stream.drift.monitor import DriftMonitor, DriftRule
from phoenix_stream.drift.report import DriftReport
from phoenix_stream.training.datagen import (
    FEATURE_NAMES,
    PROFILE_FEATURES,
    REQUEST_FEATURES,
    default_probability,
    make_dataset,
    sample_request_features,
)

REFERENCE_ROWS = 5_000
WINDOW_ROWS = 1_000
WINDOW_SECONDS = 60.0
SHIFT = 0.5  # rough standard deviations of the request features
RAMP_WINDOWS = 5
LEAD_WINDOWS = 2  # null windows before the shift in each drift run
HORIZON = 10  # windows after the shift's start before a run counts as missed
PLAIN_ALPHA = 0.05
POOL_ROWS = 100_000
_CHUNK_ROWS = 100_000  # rows made per make_dataset call for null windows


@dataclass(frozen=True)
class World:
    """The reference rows and a pool of profile rows for drift runs."""

    reference: np.ndarray  # float64 (5,000, F)
    scores: np.ndarray  # float64 (5,000,), the model's scores on the reference
    profile_pool: np.ndarray  # float64 (POOL_ROWS, len(PROFILE_FEATURES))
    bins: Bins  # from the reference and the scores, SCORE last

    def monitor(self, rule: DriftRule | None = None) -> DriftMonitor:
        """A fresh monitor for model "credit" version "1" on this reference."""
        return DriftMonitor("credit", "1", self.bins, rule)


def make_world(seed: int = 0) -> World:
    """Reference from ``seed``, profile pool from a seed no null window uses."""
    x, _ = make_dataset(REFERENCE_ROWS, seed)
    reference = x.astype(np.float64)
    pool, _ = make_dataset(POOL_ROWS, seed + 1_000_003)
    scores = default_probability(reference)
    # The same Bins as DriftMonitor.for_model builds, once rather than per run.
    columns = {name: reference[:, i] for i, name in enumerate(FEATURE_NAMES)}
    bins = Bins.from_reference({**columns, SCORE: scores})
    return World(reference, scores, pool[:, : len(PROFILE_FEATURES)].astype(np.float64), bins)


def with_scores(x: np.ndarray) -> np.ndarray:
    """Rows (n, F) in FEATURE_NAMES order with the model's score appended: (n, F+1)."""
    x = np.asarray(x, dtype=np.float64)
    return np.column_stack([x, default_probability(x)])


def null_windows(count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` windows (1,000, F+1) of fresh rows, seeds ``seed + 1`` onwards."""
    per_chunk = _CHUNK_ROWS // WINDOW_ROWS
    for chunk in range(-(-count // per_chunk)):
        x, _ = make_dataset(_CHUNK_ROWS, seed + 1 + chunk)
        rows = with_scores(x)
        for i in range(min(per_chunk, count - chunk * per_chunk)):
            yield rows[i * WINDOW_ROWS : (i + 1) * WINDOW_ROWS]


def shifted_window(world: World, rng: np.random.Generator, shift: float) -> np.ndarray:
    """One window (1,000, F+1): pooled profiles, request features moved by ``shift`` sds."""
    profiles = world.profile_pool[rng.integers(0, POOL_ROWS, WINDOW_ROWS)]
    requests = sample_request_features(rng, WINDOW_ROWS, shift=shift)
    x = np.column_stack([profiles, *(requests[name] for name in REQUEST_FEATURES)])
    # float32 like make_dataset's rows: a float64 2.35 sits below the float32 edge 2.35.
    return with_scores(x.astype(np.float32))


def shift_at(k: int, ramp: int) -> float:
    """The shift of the k-th window (1-based) from the shift's start; ramp 0 is sudden."""
    return SHIFT if ramp == 0 else SHIFT * min(k / ramp, 1.0)


@dataclass(frozen=True)
class NullResult:
    """Per-window outcomes over the null windows (bool arrays, one entry a window)."""

    plain: np.ndarray  # any test p < 0.05
    bonferroni: np.ndarray  # any test p < 0.05 / tests
    drifted: np.ndarray  # the rule's verdict "drift" (Bonferroni and the effect floor)
    alarms: np.ndarray  # the rule's alarm (persistence 2)
    test_rejections: float  # share of single tests with p < 0.05

    @property
    def windows(self) -> int:
        """Null windows simulated."""
        return int(self.alarms.size)


def simulate_null(world: World, windows: int, seed: int = 0) -> NullResult:
    """Close ``windows`` null windows in a row with one monitor."""
    monitor = world.monitor()
    bins, tests = monitor.bins, len(monitor.bins.names)
    reports = [
        monitor.close_window(bins.count(rows), i * WINDOW_SECONDS, (i + 1) * WINDOW_SECONDS)
        for i, rows in enumerate(null_windows(windows, seed))
    ]
    p = np.array([[f.p_value for f in r.features.values()] for r in reports])
    return NullResult(
        plain=np.asarray((p < PLAIN_ALPHA).any(axis=1)),
        bonferroni=np.asarray((p < monitor.rule.alpha / tests).any(axis=1)),
        drifted=np.array([r.verdict == "drift" for r in reports]),
        alarms=np.array([r.alarm for r in reports]),
        test_rejections=float((p < PLAIN_ALPHA).mean()),
    )


@dataclass(frozen=True)
class DriftResult:
    """Detection delays in windows (inf when missed within HORIZON), one per run."""

    rule: np.ndarray  # the full rule's first alarm
    plain: np.ndarray  # plain KS: first window with any test p < 0.05
    early_alarms: int  # runs whose monitor alarmed during the null lead windows


def simulate_drift(world: World, runs: int, ramp: int, seed: int = 0) -> DriftResult:
    """``runs`` drift runs, sudden (ramp 0) or ramped over ``ramp`` windows."""
    rng = np.random.default_rng([seed, ramp])
    rule_delay = np.full(runs, np.inf)
    plain_delay = np.full(runs, np.inf)
    early = 0
    for run in range(runs):
        monitor = world.monitor()
        for k in range(1 - LEAD_WINDOWS, HORIZON + 1):
            shift = 0.0 if k < 1 else shift_at(k, ramp)
            report = _close(monitor, shifted_window(world, rng, shift), k)
            if k < 1:
                early += report.alarm
                continue
            if report.alarm and np.isinf(rule_delay[run]):
                rule_delay[run] = k
            if np.isinf(plain_delay[run]) and _plain(report):
                plain_delay[run] = k
            if np.isfinite(rule_delay[run]) and np.isfinite(plain_delay[run]):
                break
    return DriftResult(rule_delay, plain_delay, early)


def _close(monitor: DriftMonitor, rows: np.ndarray, k: int) -> DriftReport:
    start = (k + LEAD_WINDOWS) * WINDOW_SECONDS
    return monitor.close_window(monitor.bins.count(rows), start, start + WINDOW_SECONDS)


def _plain(report: DriftReport) -> bool:
    return any(f.p_value < PLAIN_ALPHA for f in report.features.values())


def _delay(delays: np.ndarray, quantile: float) -> str:
    value = float(np.quantile(delays, quantile))  # inf when that share of runs missed
    return "missed" if np.isinf(value) else f"{value:g}"


def table(null: NullResult, sudden: DriftResult, gradual: DriftResult) -> str:
    """The README table, Markdown."""
    per = 1000 / null.windows
    tests = len(FEATURE_NAMES) + 1
    lines = [
        f"False alarms per 1,000 null windows ({null.windows:,} windows of {WINDOW_ROWS:,} rows"
        f" vs a {REFERENCE_ROWS:,}-row reference, {tests} tests a window: {len(FEATURE_NAMES)}"
        f" features and {SCORE}):",
        "",
        "| detector | alarms per 1,000 windows |",
        "|---|---|",
        f"| plain KS, p < 0.05 on any test | {null.plain.sum() * per:.1f} |",
        f"| Bonferroni, p < 0.05 / {tests} | {null.bonferroni.sum() * per:.1f} |",
        f"| Bonferroni + effect floor D >= 0.1 | {null.drifted.sum() * per:.1f} |",
        f"| + persistence 2 windows (the rule) | {null.alarms.sum() * per:.1f} |",
        "",
        f"(single KS tests with p < 0.05: {100 * null.test_rejections:.1f} %)",
        "",
        f"Detection delay in windows ({sudden.rule.size:,} runs each; shift {SHIFT} sd of the"
        f" request features; gradual: linear over {RAMP_WINDOWS} windows; missed = no alarm"
        f" in {HORIZON} windows):",
        "",
        "| drift | detector | median | 95th pct | alarmed within target | missed |",
        "|---|---|---|---|---|---|",
    ]
    for name, result, target in (("sudden", sudden, 2), ("gradual", gradual, 4)):
        for detector, delays in (("plain KS", result.plain), ("the rule", result.rule)):
            lines.append(
                f"| {name} | {detector} | {_delay(delays, 0.5)} | {_delay(delays, 0.95)}"
                f" | {100 * np.mean(delays <= target):.1f} % within {target}"
                f" | {100 * np.mean(np.isinf(delays)):.1f} % |"
            )
    early = sudden.early_alarms + gradual.early_alarms
    lines += ["", f"(rule alarms during the {2 * sudden.rule.size:,} runs' null lead: {early})"]
    return "\n".join(lines)


def main() -> None:
    """Run the simulation and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--null-windows", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    world = make_world(args.seed)
    null = simulate_null(world, args.null_windows, args.seed)
    sudden = simulate_drift(world, args.runs, 0, args.seed)
    gradual = simulate_drift(world, args.runs, RAMP_WINDOWS, args.seed)
    print(table(null, sudden, gradual))


if __name__ == "__main__":
    main()
