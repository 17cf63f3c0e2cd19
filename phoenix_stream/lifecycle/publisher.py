"""Making deployment decisions: deploy, promote, roll back; one write path for all.

The HTTP admin endpoints, the CLI (through them) and the rollout controller all decide
through ``DeploymentPublisher``: it validates the change against the registry, gives it
the next generation, produces it to the ``deployments`` topic, and waits until this
worker's board has taken it (so the answer says whether it serves). Every record is
signed (``control_auth``); ``actor`` is the authenticated caller (the admin token's
holder, the controller, the retraining), never a name from a request body. A change
that keeps the current challenger keeps who deployed it (``challenger_by``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.lifecycle.deployment_record import (
    DEFAULT_STEPS,
    DeploymentRecord,
    next_generation,
    parse_record,
)
from phoenix_stream.lifecycle.deployments import DeploymentBoard
from phoenix_stream.messages.records import OutRecord
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.streaming.emitter import BatchEmitter

# How long a decision waits to be read back by this worker's board, seconds.
PROPAGATION_TIMEOUT_S = 15.0


class NoChallengerError(ValidationError):
    """Promote or roll back asked of a model that has no challenger."""


class DeploymentPublisher:
    """Validates, numbers, produces and confirms deployment decisions."""

    def __init__(
        self,
        board: DeploymentBoard,
        registry: ModelRegistry,
        emitter: BatchEmitter,
        topic: str,
        auth: ControlAuth,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._auth = auth
        self._board = board
        self._registry = registry
        self._emitter = emitter
        self._topic = topic
        self._clock = clock
        self._lock = asyncio.Lock()  # one decision at a time per worker: generations in order

    async def deploy(
        self, model: str, change: Mapping[str, Any], *, actor: str
    ) -> DeploymentRecord:
        """Deploy ``change`` (champion, challenger, strategy, share, steps, reason, evidence).

        ValidationError naming the field for a bad change or a version not registered.
        A canary without a share starts at its first step.
        """
        fields = dict(change)
        current = self._board.record(model)
        if (
            current is not None
            and current.deployment.challenger is not None
            and fields.get("challenger") == current.deployment.challenger
            and "challenger_since" not in fields
        ):
            fields["challenger_since"] = current.challenger_since  # the same rollout goes on
            fields.setdefault("challenger_by", current.challenger_by)
        if fields.get("strategy") == "canary" and "share" not in fields:
            steps = fields.setdefault("steps", list(DEFAULT_STEPS))
            if isinstance(steps, list) and steps:
                fields["share"], fields["step"] = steps[0], 0
        return await self._publish(model, fields, actor)

    async def promote(
        self, model: str, *, actor: str, reason: str, evidence: Mapping[str, Any] | None = None
    ) -> DeploymentRecord:
        """The challenger becomes the champion, alone."""
        current = self._current(model)
        if current.deployment.challenger is None:
            raise NoChallengerError("challenger", f"{model} has no challenger to promote")
        change = {"champion": current.deployment.challenger, "strategy": "single"}
        return await self._publish(model, {**change, "reason": reason, "evidence": evidence}, actor)

    async def rollback(
        self, model: str, *, actor: str, reason: str, evidence: Mapping[str, Any] | None = None
    ) -> DeploymentRecord:
        """The challenger is retired; the champion serves alone."""
        current = self._current(model)
        if current.deployment.challenger is None:
            raise NoChallengerError("challenger", f"{model} has no challenger to roll back")
        change = {"champion": current.deployment.champion, "strategy": "single"}
        return await self._publish(model, {**change, "reason": reason, "evidence": evidence}, actor)

    def _current(self, model: str) -> DeploymentRecord:
        record = self._board.record(model)
        if record is None:
            raise ValidationError("model", f"{model} has no recorded deployment")
        return record

    async def _publish(self, model: str, fields: Mapping[str, Any], actor: str) -> DeploymentRecord:
        known = self._registry.versions(model)
        if not known:
            raise ValidationError("model", f"no model {model!r} in the registry")
        async with self._lock:
            record = parse_record(
                {
                    **{k: v for k, v in fields.items() if v is not None},
                    "model": model,
                    "generation": next_generation(
                        self._board.highest_generation(model), self._clock
                    ),
                    "actor": actor,
                    "decided_at": self._clock(),
                }
            )
            for role, version in (
                ("champion", record.deployment.champion),
                ("challenger", record.deployment.challenger),
            ):
                if version is not None and version not in known:
                    raise ValidationError(role, f"{model} has no version {version!r} ({known})")
            value = record.seal(self._auth, self._topic)
            await self._emitter.emit([OutRecord(self._topic, model.encode(), value)])
            await self._await_read_back(record)
        return record

    async def _await_read_back(self, record: DeploymentRecord) -> None:
        """Until this worker's board has read and tried ``record`` (bounded)."""
        try:
            await asyncio.wait_for(
                self._board.settled(record.model, record.generation), PROPAGATION_TIMEOUT_S
            )
        except TimeoutError:
            pass  # the answer then says it is not serving here yet
