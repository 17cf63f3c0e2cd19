"""Retrain agent: each retrain request (a drift alarm, or by hand) runs the retraining job.

The job trains off the event loop, one at a time per model, skips a trigger it has seen,
registers the new version and deploys it as a shadow; the rollout controller decides. A
request that is not signed with an accepted key, or not keyed by its model, is
dead-lettered as ``unauthenticated_control`` and runs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from phoenix_stream.exceptions import Unauthenticated, ValidationError
from phoenix_stream.lifecycle import control_auth
from phoenix_stream.lifecycle.retrain_request import read_request
from phoenix_stream.messages.records import InRecord
from phoenix_stream.streaming.batches import run_batches

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

log = logging.getLogger(__name__)

# How long one await of a retraining (training, registering) may take before it counts as
# stalled, seconds.
RETRAIN_PATIENCE_S = 900.0


def register(app: PhoenixApp) -> None:
    """The ``phoenix.retrain`` agent, on the retrain topic."""

    @app.agent(app.phoenix_topics.retrain, name="phoenix.retrain")
    async def retrain(stream: Any) -> None:
        """Run one retraining per request, in order."""
        runtime = app.runtime

        async def handle(records: Sequence[InRecord]) -> None:
            for record in records:
                try:
                    request = read_request(
                        record.topic, record.key, record.value, runtime.control_auth
                    )
                except ValidationError as exc:
                    kind = (
                        control_auth.KIND if isinstance(exc, Unauthenticated) else "invalid_retrain"
                    )
                    dead = runtime.dead_letters.record(record, kind, str(exc), field=exc.field)
                    await runtime.emitter.emit([dead])
                    continue
                outcome = await runtime.retrain.run(request)
                log.info("retrain %s: %s", request.model, outcome.as_dict())

        # A job waits for labels (polling: progress) and then trains in a thread: one await
        # that may take minutes on a busy machine, not a stall.
        policy = runtime.failure_policy("retrain", patience_s=RETRAIN_PATIENCE_S)
        await run_batches(stream, handle, policy, take=10, within_s=0.5)
