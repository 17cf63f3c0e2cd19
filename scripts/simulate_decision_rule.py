"""Simulate the promotion rule (phoenix_stream.lifecycle.evidence) as a user would run it.

Each run draws labelled outcomes for a champion and a challenger, and applies ``decide``
after every 50 labels until it promotes, rolls back or keeps the champion at the label
budget. For contrast it also applies a naive fixed-n two-sided z-test (|z| >= 1.96) at
the same looks, from ``min_labels`` up to the same budget. Prints a Markdown table.

    .venv/bin/python scripts/simulate_decision_rule.py [--runs 2000] [--seed 7] [--tau 0.02]

tests/unit/lifecycle/test_evidence_simulation.py imports ``Case``, ``CASES`` and
``simulate`` from here, so the tests and this table run the same simulation.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from phoenix_stream.lifecycle.evidence import (
    AB_RULE,
    SHADOW_RULE,
    ArmSummary,
    DecisionRule,
    Outcome,
    PairedSummary,
    UnpairedSummary,
    decide,
)

LOOK_EVERY = 50  # labels between two looks at the rule
NAIVE_Z = 1.959964  # two-sided 5 % critical value of the naive fixed-n z-test

Counts = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Case:
    """One scenario: accuracies, how labels arrive, and the rule applied."""

    name: str
    kind: Literal["paired", "unpaired"]
    champion_accuracy: float
    challenger_accuracy: float
    rule: DecisionRule
    disagreement: float = 0.15  # paired: fraction of requests where exactly one is right
    share: float = 0.5  # unpaired: fraction of labels served by the challenger

    def probabilities(self) -> list[float]:
        """Per-label category probabilities, in the order ``summary_of`` reads them."""
        a, b = self.champion_accuracy, self.challenger_accuracy
        if self.kind == "unpaired":
            s = self.share
            return [(1 - s) * (1 - a), (1 - s) * a, s * (1 - b), s * b]
        # Only the challenger right (d = +1), only the champion right (d = -1), both wrong,
        # both right; the first two sum to the disagreement, differ by b - a.
        only_b = (self.disagreement + b - a) / 2
        only_a = (self.disagreement - b + a) / 2
        probabilities = [only_b, only_a, 1 - a - only_b, a - only_a]
        if min(probabilities) < 0:
            raise ValueError(f"{self.name}: disagreement too small for these accuracies")
        return probabilities


def summary_of(case: Case, counts: Counts) -> PairedSummary | UnpairedSummary:
    """The summary that SQL aggregates would give for one run's category counts."""
    c0, c1, c2, c3 = (int(c) for c in counts)
    if case.kind == "paired":
        return PairedSummary(c0 + c1 + c2 + c3, c0 - c1, c0 + c1, c0 + c2)
    # 0-1 loss: loss^2 = loss.
    return UnpairedSummary(ArmSummary(c0 + c1, c0, c0), ArmSummary(c2 + c3, c2, c2))


def cumulative_counts(case: Case, runs: int, rng: np.random.Generator) -> Counts:
    """Category counts after each look: shape (runs, looks, 4)."""
    looks = case.rule.label_budget // LOOK_EVERY
    draws = rng.multinomial(LOOK_EVERY, case.probabilities(), size=(runs, looks))
    return np.cumsum(draws, axis=1, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Result:
    """Outcome of each run, labels used by each, and the naive test's rejection rate."""

    outcomes: list[Outcome]
    labels: npt.NDArray[np.int64]
    naive_rejected: float  # fraction of runs where the naive z-test rejected at some look

    def rate(self, outcome: Outcome) -> float:
        """Fraction of runs that ended in ``outcome``."""
        return self.outcomes.count(outcome) / len(self.outcomes)

    def median_labels_to_decision(self) -> float | None:
        """Median labels of the runs that promoted or rolled back (None if none did)."""
        decided = [int(n) for o, n in zip(self.outcomes, self.labels, strict=True) if o != "keep"]
        return float(np.median(decided)) if decided else None


def simulate(case: Case, runs: int, seed: int) -> Result:
    """Run ``decide`` after every 50 labels of ``runs`` seeded runs of ``case``."""
    counts = cumulative_counts(case, runs, np.random.default_rng(seed))
    outcomes: list[Outcome] = ["keep"] * runs
    labels = np.full(runs, case.rule.label_budget, dtype=np.int64)
    active = list(range(runs))
    for look in range(counts.shape[1]):
        still = []
        for run in active:
            decision = decide(summary_of(case, counts[run, look]), case.rule)
            if decision.outcome == "continue":
                still.append(run)
            else:
                outcomes[run], labels[run] = decision.outcome, decision.n
        active = still
    return Result(outcomes, labels, naive_rejection_rate(case, counts))


def naive_rejection_rate(case: Case, counts: Counts) -> float:
    """Fraction of runs a fixed-n z-test, looked at every 50 labels, rejects at some look."""
    c = counts.astype(np.float64)
    floor = case.rule.variance_floor
    if case.kind == "paired":
        n = c.sum(axis=2)
        mean = (c[..., 0] - c[..., 1]) / n
        var = np.maximum(((c[..., 0] + c[..., 1]) / n - mean**2) * n / (n - 1), floor) / n
        enough = n >= case.rule.min_labels
    else:
        n_a, n_b = c[..., 0] + c[..., 1], c[..., 2] + c[..., 3]
        n_a, n_b = np.maximum(n_a, 2), np.maximum(n_b, 2)
        p_a, p_b = c[..., 0] / n_a, c[..., 2] / n_b
        mean = p_a - p_b
        var = np.maximum(p_a * (1 - p_a) * n_a / (n_a - 1), floor) / n_a
        var += np.maximum(p_b * (1 - p_b) * n_b / (n_b - 1), floor) / n_b
        enough = np.minimum(n_a, n_b) >= case.rule.min_labels
    rejected = (np.abs(mean) >= NAIVE_Z * np.sqrt(var)) & enough
    return float(rejected.any(axis=1).mean())


def _cases(
    name: str, kind: Literal["paired", "unpaired"], rule: DecisionRule, **kw: float
) -> list[Case]:
    return [
        Case(f"{name}, equal (0.85)", kind, 0.85, 0.85, rule, **kw),
        Case(f"{name}, 2 points better (0.87)", kind, 0.85, 0.87, rule, **kw),
        Case(f"{name}, 2 points worse (0.83)", kind, 0.85, 0.83, rule, **kw),
    ]


# The cases the simulation tests assert on: the hard end of 10-15 % disagreement.
CASES: list[Case] = [
    *_cases("shadow, 15 % disagreement", "paired", SHADOW_RULE, disagreement=0.15),
    *_cases("A/B 50 %", "unpaired", AB_RULE, share=0.5),
]


def report_cases(tau: float) -> list[Case]:
    """The test cases, the easy end of the disagreement range, and a 10 % canary."""
    canary_budget = 50 * math.ceil(AB_RULE.label_budget * 0.25 / (0.1 * 0.9) / 50)
    canary = dataclasses.replace(AB_RULE, label_budget=canary_budget)
    cases = [
        *CASES[:3],
        *_cases("shadow, 10 % disagreement", "paired", SHADOW_RULE, disagreement=0.10),
        *CASES[3:],
        *_cases("canary 10 %", "unpaired", canary, share=0.1)[1:],
    ]
    return [dataclasses.replace(c, rule=dataclasses.replace(c.rule, tau=tau)) for c in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs per case")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tau", type=float, default=SHADOW_RULE.tau, help="mixture scale")
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        "| case | runs | label budget | promoted % | rolled back % | kept % "
        "| median labels to decision | naive z-test rejected % |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, case in enumerate(report_cases(args.tau)):
        result = simulate(case, args.runs, args.seed + i)
        median = result.median_labels_to_decision()
        print(
            f"| {case.name} | {args.runs:,} | {case.rule.label_budget:,} "
            f"| {100 * result.rate('promote'):.1f} | {100 * result.rate('rollback'):.1f} "
            f"| {100 * result.rate('keep'):.1f} | {'-' if median is None else f'{median:,.0f}'} "
            f"| {100 * result.naive_rejected:.1f} |"
        )
    rule = SHADOW_RULE
    print(
        f"\nalpha {rule.alpha}, tau {args.tau}, min_labels {rule.min_labels} (pairs, or per arm), "
        f"one look every {LOOK_EVERY} labels; A/B and canary budgets count both arms. "
        f"{time.perf_counter() - started:.0f} s."
    )


if __name__ == "__main__":
    main()
