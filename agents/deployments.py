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
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError

from phoenix_stream.exceptions import PhoenixError, Unauthenticated, ValidationError
from phoenix_stream.lifecycle import control_auth
from phoenix_stream.lifecycle.deployments import DeploymentRecord, read_record
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.storage.deployments import DeploymentHistory
from phoenix_stream.streaming.batches import run_batches

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

log = logging.getLogger(__name__)


def register(app: PhoenixApp) -> None:
    """The ``phoenix.deployments`` agent, and the rollout controller's timer."""
    settings = app.settings

    @app.agent(app.phoenix_topics.deployments, name="phoenix.deployments")
    async def deployments(stream: Any) -> None:
        """Record every decision on ``deployments`` in PostgreSQL."""
        runtime = app.runtime
        history = DeploymentHistory(runtime.database)
        board = runtime.deployments

        async def handle(records: Sequence[InRecord]) -> None:
            valid: list[DeploymentRecord] = []
            dead: list[OutRecord] = []
            now = time.time()
            for record in records:
                if record.value is None:
                    continue  # a tombstone (DELETE /v1/deployments/{model}): nothing to record
                try:
                    valid.append(
                        read_record(
                            record.topic,
                            record.key,
                            record.value,
                            runtime.control_auth,
                            registered=board.registered,
                            now_s=now,
                        )
                    )
                except ValidationError as exc:
                    kind = (
                        control_auth.KIND
                        if isinstance(exc, Unauthenticated)
                        else "invalid_deployment"
                    )
                    dead.append(
                        runtime.dead_letters.record(record, kind, str(exc), field=exc.field)
                    )
            await history.record(valid)
            if dead:
                await runtime.emitter.emit(dead)

        await run_batches(
            stream, handle, runtime.failure_policy("deployments"), take=100, within_s=0.2
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
