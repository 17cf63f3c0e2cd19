"""Deployments agent (every decision into the audit trail) and the rollout controller's timer.

Each worker's ``DeploymentBoard`` reads the topic for serving; this agent (one owner of
the topic's partition at a time) records each decision once in ``deployment_history``
and dead-letters a record that is not a valid decision (``invalid_deployment``) or not
an authentic one (``unauthenticated_control``: no or a wrong authenticator, or a key that
is not its model); neither reaches the audit trail. Tombstones are skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiokafka.errors import KafkaError

from phoenix_stream.exceptions import PhoenixError
from phoenix_stream.lifecycle.deployment_record import DeploymentRecord, read_record
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.storage.deployments import DeploymentHistory
from phoenix_stream.streaming.consumers import ConsumerSpec, Taken, one_message, register_consumer

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

log = logging.getLogger(__name__)


def register(app: PhoenixApp) -> None:
    """The ``phoenix.deployments`` agent, and the rollout controller's timer."""
    settings, runtime = app.settings, app.runtime
    board = runtime.deployments
    history = DeploymentHistory(runtime.database)

    def parse(record: InRecord) -> DeploymentRecord | None:
        if record.value is None:
            return None  # a tombstone (DELETE /v1/deployments/{model}): nothing to record
        return read_record(
            record.topic,
            record.key,
            record.value,
            runtime.control_auth,
            registered=board.registered,
            now_s=time.time(),
        )

    async def record_decisions(taken: Sequence[Taken[DeploymentRecord]]) -> Sequence[OutRecord]:
        await history.record([decision for _, decision in taken])
        return []

    register_consumer(
        app,
        ConsumerSpec(
            name="deployments",
            topic=app.phoenix_topics.deployments,
            decode=one_message(parse, "invalid_deployment"),
            handle=record_decisions,
            take=100,
            within_s=0.2,
        ),
    )

    async def rollout() -> None:
        """On the leader only: move challengers on evidence (when PHOENIX_AUTO_PROMOTE is on)."""
        if not settings.auto_promote:
            return
        try:
            for record in await app.runtime.rollout.tick():
                log.info("rollout: %s -> %s (%s)", record.model, record.as_dict(), record.reason)
        except (PhoenixError, KafkaError) as exc:  # an outage: the next tick tries again
            log.warning("rollout tick failed: %r", exc)
        except Exception:  # a bug must not end the timer: it is logged with its traceback
            log.exception("rollout tick failed")

    # On the leader only, so that one worker decides (Faust elects it among the group).
    app.timer(settings.rollout_interval_s, on_leader=True)(rollout)
