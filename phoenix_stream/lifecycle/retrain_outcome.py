"""What one retrain job did (``RetrainOutcome``), and how a step ends a job early."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["OUTCOMES", "JobEnded", "Outcome", "RetrainOutcome"]

Outcome = Literal["deployed", "duplicate", "too_little_data", "failed", "rate_limited", "refused"]
OUTCOMES: tuple[Outcome, ...] = (
    "deployed",
    "duplicate",
    "too_little_data",
    "failed",
    "rate_limited",
    "refused",
)


@dataclass(frozen=True, slots=True)
class RetrainOutcome:
    """What one job did; times in epoch seconds, ``seconds`` its duration."""

    model: str
    outcome: Outcome
    reason: str  # why, in words: the failure, the duplicate, or what was deployed
    trigger_id: str | None = None
    version: str | None = None  # the version registered (or that a duplicate produced)
    champion: str | None = None
    rows: int = 0
    first_at: float | None = None
    last_at: float | None = None
    seconds: float = 0.0
    generation: int | None = None  # of the shadow deployment
    # The label sources whose labels the rows came from (lifecycle.label_sources).
    label_sources: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return dataclasses.asdict(self)


class JobEnded(Exception):
    """Raised by a step to end its job early with an outcome and the facts known so far."""

    def __init__(self, outcome: Outcome, reason: str, **facts: Any) -> None:
        super().__init__(reason)
        self.outcome: Outcome = outcome
        self.reason = reason
        self.facts = facts
