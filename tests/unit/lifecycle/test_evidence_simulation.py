"""The promotion rule as a user runs it: seeded simulations, one look every 50 labels.

The simulation lives in scripts/simulate_decision_rule.py (which prints the README table
with 2,000 runs per case); here 200 runs per case hold the targets with margin.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
RUNS = 200


def load_simulation() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "simulate_decision_rule", ROOT / "scripts" / "simulate_decision_rule.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the defining module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


SIM = load_simulation()
SHADOW_EQUAL, SHADOW_BETTER, SHADOW_WORSE, AB_EQUAL, AB_BETTER, AB_WORSE = SIM.CASES


def run(case: Any, seed: int) -> Any:
    result = SIM.simulate(case, RUNS, seed)
    assert len(result.outcomes) == RUNS
    assert result.labels.max() <= case.rule.label_budget
    return result


def test_cases_are_the_advertised_scenarios() -> None:
    assert [c.kind for c in SIM.CASES] == ["paired"] * 3 + ["unpaired"] * 3
    assert [c.challenger_accuracy for c in SIM.CASES] == [0.85, 0.87, 0.83] * 2
    assert all(c.champion_accuracy == 0.85 for c in SIM.CASES)
    assert SHADOW_EQUAL.disagreement == 0.15 and AB_EQUAL.share == 0.5


@pytest.mark.parametrize("case_index", range(6))
def test_simulated_labels_have_the_stated_accuracies(case_index: int) -> None:
    case = SIM.CASES[case_index]
    counts = SIM.cumulative_counts(case, 50, np.random.default_rng(1))[:, -1].sum(axis=0)
    if case.kind == "paired":
        n = counts.sum()
        assert 1 - (counts[0] + counts[2]) / n == pytest.approx(case.champion_accuracy, abs=0.003)
        assert 1 - (counts[1] + counts[2]) / n == pytest.approx(case.challenger_accuracy, abs=0.003)
        assert (counts[0] + counts[1]) / n == pytest.approx(case.disagreement, abs=0.003)
    else:
        champion, challenger = counts[:2].sum(), counts[2:].sum()
        assert 1 - counts[0] / champion == pytest.approx(case.champion_accuracy, abs=0.003)
        assert 1 - counts[2] / challenger == pytest.approx(case.challenger_accuracy, abs=0.003)
        assert challenger / counts.sum() == pytest.approx(case.share, abs=0.005)


@pytest.mark.parametrize(("case", "seed"), [(SHADOW_EQUAL, 11), (AB_EQUAL, 21)])
def test_an_equal_challenger_is_rarely_promoted_or_rolled_back(case: Any, seed: int) -> None:
    result = run(case, seed)
    assert result.rate("promote") <= 0.05
    # Two-sided level alpha over all looks, both directions together.
    assert result.rate("promote") + result.rate("rollback") <= case.rule.alpha
    # The same data looked at with a fixed-n z-test: the inflation the rule avoids.
    assert result.naive_rejected >= 0.2


@pytest.mark.parametrize(("case", "seed"), [(SHADOW_BETTER, 12), (AB_BETTER, 22)])
def test_a_challenger_two_points_better_is_promoted(case: Any, seed: int) -> None:
    result = run(case, seed)
    assert result.rate("promote") >= 0.80
    assert result.rate("rollback") == 0.0


@pytest.mark.parametrize(("case", "seed"), [(SHADOW_WORSE, 13), (AB_WORSE, 23)])
def test_a_challenger_two_points_worse_is_rolled_back(case: Any, seed: int) -> None:
    result = run(case, seed)
    assert result.rate("rollback") >= 0.80
    assert result.rate("promote") == 0.0


def test_paired_needs_several_times_fewer_labels_than_unpaired() -> None:
    paired = run(SHADOW_BETTER, 14).median_labels_to_decision()
    unpaired = run(AB_BETTER, 24).median_labels_to_decision()
    assert unpaired >= 2.5 * paired
