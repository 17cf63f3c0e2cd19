"""The promotion rule: the mixture statistic, the summaries and the decision."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from phoenix_stream.lifecycle.evidence import (
    AB_RULE,
    SHADOW_RULE,
    ArmSummary,
    Decision,
    DecisionRule,
    PairedSummary,
    UnpairedSummary,
    decide,
    log_mixture_lr,
)

# No label floor or budget in the way, for tests of the statistic alone.
OPEN = DecisionRule(min_labels=2, label_budget=10**9)


def paired(n: int, challenger_only: int, champion_only: int, both_wrong: int = 0) -> PairedSummary:
    """n pairs: only the challenger right, only the champion right, both wrong, rest both right."""
    d_sum = challenger_only - champion_only
    return PairedSummary(n, d_sum, challenger_only + champion_only, challenger_only + both_wrong)


def arm(n: int, wrong: int) -> ArmSummary:
    """n labels under 0-1 loss, ``wrong`` of them wrong."""
    return ArmSummary(n, wrong, wrong)


def test_log_mixture_lr_known_value() -> None:
    # V = tau^2: sqrt(1/2) * exp(e^2 / (4 tau^2)), and e = 2 tau makes the exponent 1.
    assert log_mixture_lr(0.04, 0.0004, 0.02) == pytest.approx(0.5 * math.log(0.5) + 1.0)
    assert log_mixture_lr(0.0, 0.0004, 0.02) == pytest.approx(0.5 * math.log(0.5))


@pytest.mark.parametrize(
    ("effect", "variance", "tau"),
    [(0.02, 1e-4, 0.02), (-0.03, 4e-5, 0.01), (0.0, 1e-3, 0.05), (0.01, 2e-5, 0.02)],
)
def test_log_mixture_lr_is_the_mixture_of_normal_likelihoods(
    effect: float, variance: float, tau: float
) -> None:
    sd = math.sqrt(variance)
    mixture, _ = integrate.quad(
        lambda theta: stats.norm.pdf(effect, theta, sd) * stats.norm.pdf(theta, 0.0, tau),
        -10 * tau,
        10 * tau,
        points=[0.0, effect],
    )
    expected = math.log(mixture / stats.norm.pdf(effect, 0.0, sd))
    assert log_mixture_lr(effect, variance, tau) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_paired_statistic_uses_the_mean_difference_and_its_sample_variance() -> None:
    rng = np.random.default_rng(3)
    champion = (rng.random(800) < 0.15).astype(float)
    challenger = np.where(rng.random(800) < 0.1, 1.0 - champion, champion)
    summary = PairedSummary.from_losses(champion.tolist(), challenger.tolist())
    d = champion - challenger

    decision = decide(summary, OPEN)

    assert decision.n == 800
    assert decision.effect == pytest.approx(d.mean())
    assert decision.champion_metric == pytest.approx(1 - champion.mean())
    assert decision.challenger_metric == pytest.approx(1 - challenger.mean())
    expected = log_mixture_lr(d.mean(), d.var(ddof=1) / 800, OPEN.tau)
    assert decision.statistic == pytest.approx(expected)
    assert decision.bound == pytest.approx(math.log(20))


def test_unpaired_statistic_adds_the_variances_of_both_means() -> None:
    rng = np.random.default_rng(4)
    a = (rng.random(900) < 0.15).astype(float)
    b = (rng.random(700) < 0.12).astype(float)
    summary = UnpairedSummary(
        ArmSummary.from_losses(a.tolist()), ArmSummary.from_losses(b.tolist())
    )

    decision = decide(summary, OPEN)

    assert decision.n == 1600
    assert decision.effect == pytest.approx(a.mean() - b.mean())
    variance = a.var(ddof=1) / 900 + b.var(ddof=1) / 700
    assert decision.statistic == pytest.approx(log_mixture_lr(a.mean() - b.mean(), variance, 0.02))


def test_summaries_merge_like_the_concatenated_losses() -> None:
    first = PairedSummary.from_losses([1, 0, 0], [0, 0, 1])
    second = PairedSummary.from_losses([1, 1], [0, 1])
    assert first.merge(second) == PairedSummary.from_losses([1, 0, 0, 1, 1], [0, 0, 1, 0, 1])
    assert first.merge(second) == PairedSummary(5, 1.0, 3.0, 3.0)
    assert ArmSummary.from_losses([1, 0]).merge(ArmSummary.from_losses([0.5])) == ArmSummary(
        3, 1.5, 1.25
    )


def test_clear_evidence_promotes_a_better_and_rolls_back_a_worse_challenger() -> None:
    better = decide(paired(3000, 240, 120), SHADOW_RULE)
    worse = decide(paired(3000, 120, 240), SHADOW_RULE)
    assert (better.outcome, worse.outcome) == ("promote", "rollback")
    assert better.effect == pytest.approx(0.04) and worse.effect == pytest.approx(-0.04)
    assert better.statistic >= better.bound and worse.statistic >= worse.bound
    assert "better" in better.reason and "worse" in worse.reason

    ab_better = decide(UnpairedSummary(arm(5000, 900), arm(5000, 600)), AB_RULE)
    ab_worse = decide(UnpairedSummary(arm(5000, 600), arm(5000, 900)), AB_RULE)
    assert (ab_better.outcome, ab_worse.outcome) == ("promote", "rollback")
    assert ab_better.champion_metric == pytest.approx(0.82)
    assert ab_better.challenger_metric == pytest.approx(0.88)


def test_continue_before_min_labels_whatever_the_evidence() -> None:
    rule = DecisionRule(min_labels=500, label_budget=6000)
    early = decide(paired(499, 200, 0), rule)
    assert early.outcome == "continue"
    assert early.statistic >= early.bound  # the test alone would have promoted
    assert "500 pairs" in early.reason
    assert decide(paired(500, 200, 0), rule).outcome == "promote"

    # Unpaired: min_labels counts in each arm, so a small challenger arm holds the decision.
    lopsided = UnpairedSummary(arm(20_000, 4000), arm(499, 0))
    assert decide(lopsided, rule).outcome == "continue"


def test_no_labels_yet_is_continue_with_no_metrics() -> None:
    decision = decide(PairedSummary(), SHADOW_RULE)
    assert decision.outcome == "continue"
    assert decision.champion_metric is None and decision.challenger_metric is None
    assert decision.statistic == 0.0
    one_arm = decide(UnpairedSummary(arm(10, 1), ArmSummary()), AB_RULE)
    assert (one_arm.outcome, one_arm.challenger_metric) == ("continue", None)


def test_keep_when_the_budget_runs_out_undecided() -> None:
    rule = DecisionRule(min_labels=500, label_budget=6000)
    assert decide(paired(5999, 300, 300), rule).outcome == "continue"
    at_budget = decide(paired(6000, 300, 300), rule)
    assert at_budget.outcome == "keep"
    assert "6000" in at_budget.reason
    assert decide(paired(7000, 350, 350), rule).outcome == "keep"
    # A rejection still wins over the budget: the evidence is valid at any look.
    assert decide(paired(7000, 500, 200), rule).outcome == "promote"
    ab = decide(UnpairedSummary(arm(12_000, 1800), arm(12_000, 1800)), AB_RULE)
    assert (ab.outcome, ab.n) == ("keep", 24_000)


def test_zero_variance_is_floored() -> None:
    # No disagreement at all: nothing to decide on, and no division by zero.
    identical = decide(paired(600, 0, 0), SHADOW_RULE)
    assert identical.outcome == "continue" and identical.statistic < 0
    # Every pair in the challenger's favour has zero sample variance too.
    one_sided = decide(paired(600, 600, 0), SHADOW_RULE)
    assert one_sided.outcome == "promote" and math.isfinite(one_sided.statistic)
    perfect_arms = decide(UnpairedSummary(arm(600, 0), arm(600, 0)), SHADOW_RULE)
    assert perfect_arms.outcome == "continue"


def test_statistic_grows_with_the_effect_at_fixed_variance() -> None:
    values = [log_mixture_lr(e, 1e-4, 0.02) for e in (0.0, 0.005, 0.01, 0.02, 0.04)]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert log_mixture_lr(-0.02, 1e-4, 0.02) == pytest.approx(log_mixture_lr(0.02, 1e-4, 0.02))


@st.composite
def paired_summaries(draw: st.DrawFn) -> PairedSummary:
    n = draw(st.integers(2, 5000))
    challenger_only = draw(st.integers(0, n))
    champion_only = draw(st.integers(0, n - challenger_only))
    both_wrong = draw(st.integers(0, n - challenger_only - champion_only))
    return paired(n, challenger_only, champion_only, both_wrong)


# "More evidence in the same direction" may turn continue into a decision (the variance
# shrinks too), but never turns a promotion into anything else, nor a rollback.


@given(paired_summaries(), st.integers(1, 2000))
def test_more_evidence_for_the_challenger_keeps_a_promotion(
    summary: PairedSummary, extra: int
) -> None:
    # Pairs where only the challenger is right: loss_champion 1, loss_challenger 0.
    more = summary.merge(PairedSummary(extra, extra, extra, extra))
    if decide(summary, OPEN).outcome == "promote":
        assert decide(more, OPEN).outcome == "promote"


@given(paired_summaries(), st.integers(1, 2000))
def test_more_evidence_against_the_challenger_keeps_a_rollback(
    summary: PairedSummary, extra: int
) -> None:
    more = summary.merge(PairedSummary(extra, -extra, extra, 0))
    if decide(summary, OPEN).outcome == "rollback":
        assert decide(more, OPEN).outcome == "rollback"


@given(
    st.integers(2, 3000),
    st.integers(2, 3000),
    st.floats(0, 1),
    st.floats(0, 1),
    st.integers(1, 2000),
)
def test_unpaired_more_evidence_keeps_the_direction(
    n_a: int, n_b: int, err_a: float, err_b: float, extra: int
) -> None:
    summary = UnpairedSummary(arm(n_a, round(err_a * n_a)), arm(n_b, round(err_b * n_b)))
    outcome = decide(summary, OPEN).outcome
    if outcome == "promote":  # the challenger answers more requests right
        more = UnpairedSummary(summary.champion, summary.challenger.merge(arm(extra, 0)))
        assert decide(more, OPEN).outcome == "promote"
    if outcome == "rollback":  # the challenger answers more requests wrong
        more = UnpairedSummary(summary.champion, summary.challenger.merge(arm(extra, extra)))
        assert decide(more, OPEN).outcome == "rollback"


def test_decision_and_rule_serialise_to_plain_json() -> None:
    summary = PairedSummary.from_losses(np.ones(600), np.zeros(600))
    decision = decide(summary, SHADOW_RULE)
    data = decision.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {f for f in Decision.__dataclass_fields__}
    assert all(type(v) in (str, int, float, type(None)) for v in data.values())
    assert data["outcome"] == "promote"
    assert json.loads(json.dumps(SHADOW_RULE.as_dict()))["label_budget"] == 6000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": 1.0},
        {"tau": 0.0},
        {"variance_floor": 0.0},
        {"min_labels": 1},
        {"min_labels": 700, "label_budget": 600},
    ],
)
def test_rule_rejects_meaningless_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DecisionRule(**kwargs)
