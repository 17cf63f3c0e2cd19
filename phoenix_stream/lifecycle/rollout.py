"""The rollout controller: shadow, then canary steps, then a decision, on evidence only.

A challenger deployed under ``shadow`` is scored on every request beside the champion, so
each labelled request is a pair and the paired test (``evidence.SHADOW_RULE``) decides:

- **rollback** when the challenger is significantly worse;
- **keep** the champion (the challenger is retired) when the label budget runs out
  without a decision: an equal challenger is never promoted;
- when it is significantly **better**, a canary starts at the first step (e.g. 1 %). Each
  step advances once the challenger has served ``step_labels`` labelled requests at that
  step (a count of outcomes, not time), while an unpaired guard (``evidence.AB_RULE``)
  over the canary's labelled requests rolls back as soon as the challenger is
  significantly worse. After the last step it is **promoted**.

Under ``ab`` (or a canary deployed by hand without shadow evidence) the unpaired test
decides promote, rollback or keep. Every decision goes through the publisher (topic,
audit trail) with its evidence: labelled n per variant, accuracies, the statistic and
its bound. One worker decides: the controller runs on Faust's leader only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from phoenix_stream import metrics
from phoenix_stream.lifecycle.deployment_record import DEFAULT_STEPS, DeploymentRecord
from phoenix_stream.lifecycle.deployments import DeploymentBoard
from phoenix_stream.lifecycle.evidence import (
    AB_RULE,
    SHADOW_RULE,
    ArmSummary,
    Decision,
    DecisionRule,
    PairedSummary,
    UnpairedSummary,
    decide,
)
from phoenix_stream.lifecycle.publisher import DeploymentPublisher

log = logging.getLogger(__name__)

ACTOR = "rollout-controller"
# The labels of phoenix_rollout_decisions_total. keep: the evidence budget was spent without
# a decision, the challenger retired and the champion kept.
DECISIONS = ("canary", "advance", "promote", "rollback", "keep")


class EvidenceSource(Protocol):
    """Labelled outcomes summarised for the tests (``storage.feedback.FeedbackStore``)."""

    async def paired_summary(
        self, model: str, champion: str, challenger: str, since: float
    ) -> PairedSummary: ...

    async def arm_summaries(
        self, model: str, champion: str, challenger: str, since: float
    ) -> dict[str, ArmSummary]: ...


@dataclass(frozen=True, slots=True)
class RolloutRules:
    """The tests and the canary's pace; ``step_labels`` in labelled challenger requests."""

    shadow: DecisionRule = SHADOW_RULE
    unpaired: DecisionRule = AB_RULE
    step_labels: int = 200


class RolloutController:
    """Moves each model's challenger one step when its evidence allows."""

    def __init__(
        self,
        board: DeploymentBoard,
        publisher: DeploymentPublisher,
        evidence: EvidenceSource,
        rules: RolloutRules = RolloutRules(),
    ) -> None:
        self._board = board
        self._publisher = publisher
        self._evidence = evidence
        self.rules = rules

    async def tick(self) -> list[DeploymentRecord]:
        """Look at every model with a challenger once; the decisions made."""
        made: list[DeploymentRecord] = []
        pending = self._board.pending()
        for model in self._board.names():
            record = self._board.record(model)
            if record is None or record.deployment.challenger is None or model in pending:
                continue
            decided = await self._step(record)
            if decided is not None:
                made.append(decided)
        return made

    async def _step(self, record: DeploymentRecord) -> DeploymentRecord | None:
        strategy = record.deployment.strategy
        if strategy == "shadow":
            return await self._after_shadow(record)
        if strategy == "canary" and "shadow" in record.evidence:
            return await self._canary_step(record)
        return await self._unpaired(record)  # ab, or a canary deployed without shadow

    async def _after_shadow(self, record: DeploymentRecord) -> DeploymentRecord | None:
        d = record.deployment
        assert d.challenger is not None
        paired = await self._evidence.paired_summary(
            d.model, d.champion, d.challenger, record.challenger_since
        )
        verdict = decide(paired, self.rules.shadow)
        if verdict.outcome == "continue":
            return None
        evidence = {"shadow": _evidence(verdict, self.rules.shadow, "paired", paired.n, paired.n)}
        if verdict.outcome == "promote":
            steps = list(record.steps or DEFAULT_STEPS)
            return await self._decided(
                d.model,
                "canary",
                self._publisher.deploy(
                    d.model,
                    {
                        "champion": d.champion,
                        "challenger": d.challenger,
                        "strategy": "canary",
                        "steps": steps,
                        "share": steps[0],
                        "step": 0,
                        "reason": f"shadow: challenger better ({verdict.reason}); canary step 1",
                        "evidence": evidence,
                    },
                    actor=ACTOR,
                ),
            )
        return await self._retire(record, verdict, evidence)

    async def _canary_step(self, record: DeploymentRecord) -> DeploymentRecord | None:
        d = record.deployment
        assert d.challenger is not None
        arms = await self._evidence.arm_summaries(
            d.model, d.champion, d.challenger, record.challenger_since
        )
        split = _unpaired(arms, d.champion, d.challenger)
        guard = decide(split, self.rules.unpaired)
        evidence = {
            **record.evidence,
            "canary": _evidence(
                guard, self.rules.unpaired, "unpaired", split.champion.n, split.challenger.n
            ),
        }
        if guard.outcome == "rollback":
            return await self._retire(record, guard, evidence)
        at_step = await self._evidence.arm_summaries(
            d.model, d.champion, d.challenger, record.decided_at
        )
        labelled = at_step[d.challenger].n
        if labelled < self.rules.step_labels:
            return None
        evidence["step_labels"] = labelled
        if record.step + 1 >= len(record.steps):
            return await self._decided(
                d.model,
                "promote",
                self._publisher.promote(
                    d.model,
                    actor=ACTOR,
                    reason=f"canary passed {len(record.steps)} steps after shadow evidence",
                    evidence=evidence,
                ),
            )
        step = record.step + 1
        share = record.steps[step]
        return await self._decided(
            d.model,
            "advance",
            self._publisher.deploy(
                d.model,
                {
                    "champion": d.champion,
                    "challenger": d.challenger,
                    "strategy": "canary",
                    "steps": list(record.steps),
                    "share": share,
                    "step": step,
                    "reason": f"canary step {step + 1}: {share:.0%} after {labelled} labelled",
                    "evidence": evidence,
                },
                actor=ACTOR,
            ),
        )

    async def _unpaired(self, record: DeploymentRecord) -> DeploymentRecord | None:
        d = record.deployment
        assert d.challenger is not None
        arms = await self._evidence.arm_summaries(
            d.model, d.champion, d.challenger, record.challenger_since
        )
        split = _unpaired(arms, d.champion, d.challenger)
        verdict = decide(split, self.rules.unpaired)
        if verdict.outcome == "continue":
            return None
        evidence: dict[str, Any] = {
            d.strategy: _evidence(
                verdict, self.rules.unpaired, "unpaired", split.champion.n, split.challenger.n
            )
        }
        if verdict.outcome == "promote":
            return await self._decided(
                d.model,
                "promote",
                self._publisher.promote(
                    d.model, actor=ACTOR, reason=verdict.reason, evidence=evidence
                ),
            )
        return await self._retire(record, verdict, evidence)

    async def _retire(
        self, record: DeploymentRecord, verdict: Decision, evidence: Mapping[str, Any]
    ) -> DeploymentRecord:
        """Roll back (challenger worse) or keep the champion (budget spent, no decision)."""
        worse = verdict.outcome == "rollback"
        why = "challenger worse" if worse else "no evidence: kept"
        return await self._decided(
            record.model,
            "rollback" if worse else "keep",
            self._publisher.rollback(
                record.model,
                actor=ACTOR,
                reason=f"{verdict.outcome}: {why} ({verdict.reason})",
                evidence={**evidence, "decision": verdict.outcome},
            ),
        )

    async def _decided(
        self, model: str, decision: str, published: Awaitable[DeploymentRecord]
    ) -> DeploymentRecord:
        """Publish a decision and count it (``phoenix_rollout_decisions_total``)."""
        record = await published
        metrics.ROLLOUT_DECISIONS.labels(model=model, decision=decision, by="controller").inc()
        return record


def _unpaired(arms: Mapping[str, ArmSummary], champion: str, challenger: str) -> UnpairedSummary:
    return UnpairedSummary(arms[champion], arms[challenger])


def _evidence(
    verdict: Decision, rule: DecisionRule, test: str, n_champion: int, n_challenger: int
) -> dict[str, Any]:
    """What an auditor needs: the test, its rule, labelled n per variant, the verdict."""
    return {
        "test": test,
        "rule": rule.as_dict(),
        "labelled_champion": n_champion,
        "labelled_challenger": n_challenger,
        **verdict.as_dict(),
    }
