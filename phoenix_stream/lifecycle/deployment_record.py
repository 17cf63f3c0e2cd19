"""A deployment decision as the ``deployments`` topic carries it: ``DeploymentRecord``.

Each record is keyed by its model and carries a ``generation`` that only grows: the
writer takes ``max(highest seen + 1, milliseconds since epoch)`` (``next_generation``),
so writers need no coordination and a replayed or reordered record can never roll a
deployment back (readers keep the highest).

Every reader (the board and the deployments agent) takes a record through
``read_record``: it must carry a valid authenticator (``control_auth``), be keyed by its
model, name a model in the registry, and have a generation no publisher could exceed (at
most ``MAX_GENERATION_LEAD_S`` ahead of the reader's clock: generations are milliseconds
since epoch, so a generation at the top of its range cannot lock a model).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from phoenix_stream.exceptions import Unauthenticated, ValidationError
from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.messages.validation import decode_json, model_name
from phoenix_stream.serving.router import Deployment
from phoenix_stream.settings import STRATEGIES, Strategy

# Canary steps when a record names none (Flagger's stepWeights style), fractions.
DEFAULT_STEPS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.25, 0.50)
MAX_TEXT = 1000  # characters kept of actor and reason
MAX_EVIDENCE_BYTES = 16_384
_YEAR_10000 = 253_402_300_800.0  # seconds since epoch; PostgreSQL's timestamps end there
# How far ahead of a reader's clock a generation (ms since epoch) may be, seconds: clock
# skew between workers, and many decisions within one millisecond, stay far below it.
MAX_GENERATION_LEAD_S = 3600.0


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """One decision: the deployment, its generation, and who made it, when and why."""

    deployment: Deployment
    generation: int
    actor: str = "settings"
    reason: str = ""
    decided_at: float = 0.0  # seconds since epoch
    evidence: Mapping[str, Any] = field(default_factory=dict)
    steps: tuple[float, ...] = ()  # canary shares to ramp through, fractions
    step: int = -1  # index into steps of the current share, -1 when not ramping
    # Since when this challenger has been scored (seconds since epoch): its evidence counts
    # from there, across the steps of one rollout. 0.0 without a challenger.
    challenger_since: float = 0.0
    # Who deployed this challenger (the authenticated actor), carried along its rollout:
    # a retraining does not replace a challenger that a person chose. "" without one.
    challenger_by: str = ""

    @property
    def model(self) -> str:
        """The model this record deploys."""
        return self.deployment.model

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types, the wire and API shape."""
        d = self.deployment
        return {
            "model": d.model,
            "champion": d.champion,
            "challenger": d.challenger,
            "strategy": d.strategy,
            "share": d.challenger_share,
            "generation": self.generation,
            "actor": self.actor,
            "reason": self.reason,
            "decided_at": self.decided_at,
            "evidence": dict(self.evidence),
            "steps": list(self.steps),
            "step": self.step,
            "challenger_since": self.challenger_since,
            "challenger_by": self.challenger_by,
        }

    def encode(self) -> bytes:
        """Unsigned JSON bytes (readers refuse them on the topic: see ``seal``)."""
        return orjson.dumps(self.as_dict())

    def seal(self, auth: ControlAuth, topic: str) -> bytes:
        """Signed JSON bytes for the deployments topic ``topic``."""
        return auth.seal(topic, self.as_dict())

    def versions(self) -> list[str]:
        """The versions this deployment scores with (champion, then challenger)."""
        d = self.deployment
        return [d.champion] if d.challenger is None else [d.champion, d.challenger]


def decode_record(raw: bytes | None) -> DeploymentRecord:
    """A record from the topic's bytes; ValidationError naming the field when invalid."""
    return parse_record(decode_json(raw))


def parse_record(data: Any) -> DeploymentRecord:
    """Validate a decoded deployment record; ValidationError naming the field."""
    if not isinstance(data, dict):
        raise ValidationError("$", "a deployment must be a JSON object")
    model = model_name(data, "model")
    champion = model_name(data, "champion")
    challenger = data.get("challenger")
    if challenger is not None:
        challenger = model_name(data, "challenger")
    strategy = data.get("strategy", "single" if challenger is None else "shadow")
    if strategy not in STRATEGIES:
        raise ValidationError("strategy", f"must be one of {', '.join(STRATEGIES)}")
    if challenger is None and strategy != "single":
        raise ValidationError("challenger", f"is required with strategy {strategy!r}")
    if challenger is not None and challenger == champion:
        raise ValidationError("challenger", "must differ from the champion")
    share = _fraction(data.get("share", 0.0), "share")
    generation = data.get("generation")
    if type(generation) is not int or not 0 < generation < 2**63:
        raise ValidationError("generation", "must be a positive 64-bit integer")
    steps_raw = data.get("steps", [])
    if not isinstance(steps_raw, list) or len(steps_raw) > 20:
        raise ValidationError("steps", "must be a list of at most 20 shares")
    steps = tuple(_fraction(s, f"steps[{i}]") for i, s in enumerate(steps_raw))
    if list(steps) != sorted(steps):
        raise ValidationError("steps", "must be increasing")
    step = data.get("step", -1)
    if type(step) is not int or not -1 <= step < max(len(steps), 1):
        raise ValidationError("step", "must index steps, or be -1")
    decided_at = _epoch_seconds(data.get("decided_at", 0.0), "decided_at")
    since = 0.0 if challenger is None else data.get("challenger_since", decided_at)
    since = _epoch_seconds(since, "challenger_since")
    evidence = data.get("evidence") or {}
    if not isinstance(evidence, dict):
        raise ValidationError("evidence", "must be an object")
    if len(encoded := orjson.dumps(evidence)) > MAX_EVIDENCE_BYTES or b"\\u0000" in encoded:
        raise ValidationError("evidence", f"must be at most {MAX_EVIDENCE_BYTES} bytes, no NUL")
    # Plain JSON from here on, as the record is written (NaN and infinities became null),
    # so that a record decoded again from its own bytes is the same record.
    evidence = orjson.loads(encoded)
    strategy_value: Strategy = strategy
    actor = _text(data, "actor")
    challenger_by = "" if challenger is None else _text(data, "challenger_by") or actor
    return DeploymentRecord(
        Deployment(model, champion, challenger, strategy_value, share),
        generation,
        actor=actor,
        reason=_text(data, "reason"),
        decided_at=decided_at,
        evidence=evidence,
        steps=steps,
        step=step,
        challenger_since=since,
        challenger_by=challenger_by,
    )


def read_record(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    auth: ControlAuth,
    *,
    registered: Callable[[str], bool],
    now_s: float,
) -> DeploymentRecord:
    """The decision a record of ``topic`` carries, if a reader may take it.

    Unauthenticated (dead-letter kind ``unauthenticated_control``) for a wrong or missing
    authenticator or a key that is not the record's model; ValidationError naming the
    field for an invalid record, a model not in the registry, or a generation ahead of
    what any publisher could have made by ``now_s`` (seconds since epoch).
    """
    record = parse_record(auth.open(topic, value))
    if key != record.model.encode():
        raise Unauthenticated("key", f"record key must be its model {record.model!r}")
    if not registered(record.model):
        raise ValidationError("model", f"no model {record.model!r} in the registry")
    limit = int((now_s + MAX_GENERATION_LEAD_S) * 1000)
    if record.generation > limit:
        raise ValidationError(
            "generation",
            f"{record.generation} is ahead of any publisher's (milliseconds since epoch, "
            f"at most {MAX_GENERATION_LEAD_S:.0f} s ahead of this reader's clock)",
        )
    return record


def _epoch_seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(where, "must be seconds since epoch")
    if not (math.isfinite(value) and 0 <= value < _YEAR_10000):
        raise ValidationError(where, "must be seconds since epoch before year 10000")
    return float(value)


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(where, "must be a number between 0 and 1")
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValidationError(where, "must be between 0 and 1")
    return number


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ValidationError(key, "must be a string")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise ValidationError(key, "must be valid text") from exc
    if "\x00" in value:
        raise ValidationError(key, "must not contain NUL")
    return value[:MAX_TEXT]


def next_generation(highest: int, clock: Callable[[], float] = time.time) -> int:
    """A generation above ``highest``: milliseconds since epoch, or one more if that is not."""
    return max(highest + 1, int(clock() * 1000))
