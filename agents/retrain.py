"""Retrain agent: each retrain request (a drift alarm, or by hand) runs the retraining job.

The job trains off the event loop, one at a time per model, skips a trigger it has seen,
registers the new version and deploys it as a shadow; the rollout controller decides. A
request that is not signed with an accepted key, or not keyed by its model, is
dead-lettered as ``unauthenticated_control`` and runs nothing; an invalid one as
``invalid_retrain``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from phoenix_stream.lifecycle.retrain_request import RetrainRequest, read_request
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.streaming.consumers import ConsumerSpec, Taken, one_message, register_consumer

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

log = logging.getLogger(__name__)

# How long one await of a retraining (training, registering) may take before it counts as
# stalled, seconds: a job waits for labels (polling: progress) and then trains in a
# thread, one await that may take minutes on a busy machine.
RETRAIN_PATIENCE_S = 900.0


def register(app: PhoenixApp) -> None:
    """The ``phoenix.retrain`` agent, on the retrain topic: one retraining per request."""
    runtime = app.runtime

    def parse(record: InRecord) -> RetrainRequest:
        return read_request(record.topic, record.key, record.value, runtime.control_auth)

    async def run(taken: Sequence[Taken[RetrainRequest]]) -> Sequence[OutRecord]:
        for _, request in taken:  # in order: a model's requests one after the other
            outcome = await runtime.retrain.run(request)
            log.info("retrain %s: %s", request.model, outcome.as_dict())
        return []

    register_consumer(
        app,
        ConsumerSpec(
            name="retrain",
            topic=app.phoenix_topics.retrain,
            decode=one_message(parse, "invalid_retrain"),
            handle=run,
            take=10,
            within_s=0.5,
            patience_s=RETRAIN_PATIENCE_S,
        ),
    )
