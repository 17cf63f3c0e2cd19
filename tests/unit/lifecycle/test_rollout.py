"""The rollout controller with stand-ins for the evidence and the publisher.

The real loop (feedback, PostgreSQL, the topic, the leader's timer) runs in
tests/integration/test_rollout.py and in ``phoenix-stream simulate --scenario rollout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from phoenix_stream import metrics
from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.lifecycle.deployment_record import DEFAULT_STEPS, parse_record
from phoenix_stream.lifecycle.deployments import DeploymentBoard
from phoenix_stream.lifecycle.evidence import ArmSummary, DecisionRule, PairedSummary
from phoenix_stream.lifecycle.rollout import RolloutController, RolloutRules
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.serving.router import Deployment

RULES = RolloutRules(
    shadow=DecisionRule(min_labels=100, label_budget=2000),
    unpaired=DecisionRule(min_labels=100, label_budget=4000),
    step_labels=50,
)


def paired(n: int, acc_champion: float, acc_challenger: float) -> PairedSummary:
    """n pairs where the two disagree exactly where their accuracies differ."""
    wins = round(n * max(acc_challenger - acc_champion, 0))
    losses = round(n * max(acc_champion - acc_challenger, 0))
    return PairedSummary(
        n=n,
        sum_d=wins - losses,
        sum_d2=wins + losses,
        sum_loss_champion=n * (1 - acc_champion),
    )


def arm(n: int, accuracy: float) -> ArmSummary:
    errors = n * (1 - accuracy)
    return ArmSummary(n, errors, errors)


class Evidence:
    def __init__(self) -> None:
        self.pairs = PairedSummary()
        self.arms: dict[str, ArmSummary] = {"1": ArmSummary(), "2": ArmSummary()}
        self.at_step: dict[str, ArmSummary] = {"1": ArmSummary(), "2": ArmSummary()}
        self.asked: list[float] = []

    async def paired_summary(self, model: str, a: str, b: str, since: float) -> PairedSummary:
        self.asked.append(since)
        return self.pairs

    async def arm_summaries(
        self, model: str, a: str, b: str, since: float
    ) -> dict[str, ArmSummary]:
        self.asked.append(since)
        return self.arms if since == 100.0 else self.at_step


class Publisher:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def deploy(self, model: str, change: Mapping[str, Any], *, actor: str) -> Any:
        self.calls.append(("deploy", dict(change)))
        return change

    async def promote(self, model: str, **kwargs: Any) -> Any:
        self.calls.append(("promote", kwargs))
        return kwargs

    async def rollback(self, model: str, **kwargs: Any) -> Any:
        self.calls.append(("rollback", kwargs))
        return kwargs


class Models:
    async def prepare(self, keys: Any) -> None:
        return None

    def failures(self) -> dict[Any, Any]:
        return {}


async def controller(
    tmp_path: Path, **record: Any
) -> tuple[RolloutController, Evidence, Publisher]:
    board = DeploymentBoard(
        "kafka://127.0.0.1:1",
        "d",
        Models(),  # type: ignore[arg-type]
        ModelRegistry(tmp_path),
        Deployment("m", "1"),
        ControlAuth("k" * 32),
    )
    fields = {
        "model": "m",
        "champion": "1",
        "challenger": "2",
        "generation": 7,
        "challenger_since": 100.0,
        "decided_at": 200.0,
        **record,
    }
    await board.apply(parse_record(fields))
    evidence, publisher = Evidence(), Publisher()
    made = RolloutController(board, publisher, evidence, RULES)  # type: ignore[arg-type]
    return made, evidence, publisher


async def test_a_better_shadow_challenger_starts_the_canary(tmp_path: Path) -> None:
    rollout, evidence, publisher = await controller(tmp_path, strategy="shadow")
    evidence.pairs = paired(1500, 0.85, 0.90)
    await rollout.tick()
    [(action, change)] = publisher.calls
    assert action == "deploy"
    assert change["strategy"] == "canary" and change["step"] == 0
    assert change["share"] == DEFAULT_STEPS[0] and change["steps"] == list(DEFAULT_STEPS)
    shadow = change["evidence"]["shadow"]
    assert shadow["outcome"] == "promote" and shadow["statistic"] >= shadow["bound"]
    assert shadow["labelled_champion"] == shadow["labelled_challenger"] == 1500
    assert evidence.asked == [100.0]  # evidence counted since the challenger started


@pytest.mark.parametrize(
    ("pairs", "decision"),
    [(paired(1500, 0.90, 0.85), "rollback"), (paired(2000, 0.85, 0.85), "keep")],
)
async def test_a_worse_or_equal_shadow_challenger_is_retired(
    tmp_path: Path, pairs: PairedSummary, decision: str
) -> None:
    rollout, evidence, publisher = await controller(tmp_path, strategy="shadow")
    evidence.pairs = pairs
    await rollout.tick()
    [(action, kwargs)] = publisher.calls
    assert action == "rollback"
    assert kwargs["evidence"]["decision"] == decision
    assert kwargs["reason"].startswith(decision)


async def test_too_little_evidence_changes_nothing(tmp_path: Path) -> None:
    rollout, evidence, publisher = await controller(tmp_path, strategy="shadow")
    evidence.pairs = paired(50, 0.80, 0.95)  # below min_labels however clear
    assert await rollout.tick() == []
    assert publisher.calls == []


def canary(step: int) -> dict[str, Any]:
    steps = [0.01, 0.1, 0.5]
    return {
        "strategy": "canary",
        "steps": steps,
        "step": step,
        "share": steps[step],
        "evidence": {"shadow": {"outcome": "promote"}},
    }


async def test_a_canary_step_advances_on_labelled_outcomes_not_time(tmp_path: Path) -> None:
    rollout, evidence, publisher = await controller(tmp_path, **canary(0))
    evidence.at_step = {"1": arm(900, 0.85), "2": arm(49, 0.85)}
    await rollout.tick()
    assert publisher.calls == []  # one label short
    evidence.at_step = {"1": arm(900, 0.85), "2": arm(50, 0.85)}
    await rollout.tick()
    [(action, change)] = publisher.calls
    assert (action, change["step"], change["share"]) == ("deploy", 1, 0.1)
    assert change["evidence"]["shadow"] == {"outcome": "promote"}  # carried along
    assert change["evidence"]["step_labels"] == 50


async def test_after_the_last_step_the_challenger_is_promoted(tmp_path: Path) -> None:
    rollout, evidence, publisher = await controller(tmp_path, **canary(2))
    evidence.at_step = {"1": arm(900, 0.85), "2": arm(400, 0.86)}
    await rollout.tick()
    [(action, kwargs)] = publisher.calls
    assert action == "promote"
    assert set(kwargs["evidence"]) >= {"shadow", "canary", "step_labels"}


async def test_the_canary_guard_rolls_back_a_worse_challenger_at_any_step(tmp_path: Path) -> None:
    rollout, evidence, publisher = await controller(tmp_path, **canary(1))
    evidence.arms = {"1": arm(5000, 0.88), "2": arm(3000, 0.80)}
    await rollout.tick()
    [(action, kwargs)] = publisher.calls
    assert action == "rollback" and kwargs["evidence"]["decision"] == "rollback"


@pytest.mark.parametrize(
    ("arms", "action"),
    [
        ({"1": arm(4000, 0.80), "2": arm(4000, 0.88)}, "promote"),
        ({"1": arm(4000, 0.88), "2": arm(4000, 0.80)}, "rollback"),
    ],
)
async def test_ab_is_decided_by_the_unpaired_test(
    tmp_path: Path, arms: dict[str, ArmSummary], action: str
) -> None:
    rollout, evidence, publisher = await controller(tmp_path, strategy="ab", share=0.5)
    evidence.arms = arms
    labels = {"model": "m", "decision": action, "by": "controller"}
    before = metrics.REGISTRY.get_sample_value("phoenix_rollout_decisions_total", labels) or 0
    await rollout.tick()
    assert [a for a, _ in publisher.calls] == [action]
    # The decision is counted once, under its own label (the alert on rollouts reads it).
    after = metrics.REGISTRY.get_sample_value("phoenix_rollout_decisions_total", labels)
    assert after == before + 1


async def test_models_without_a_challenger_are_left_alone(tmp_path: Path) -> None:
    rollout, evidence, publisher = await controller(tmp_path, challenger=None, strategy="single")
    evidence.pairs = paired(1500, 0.5, 0.9)
    assert await rollout.tick() == []
    assert publisher.calls == [] and evidence.asked == []
