"""Deployments agent (every decision into the audit trail) and the rollout controller's timer.

Each worker's ``DeploymentBoard`` reads the topic for serving; this agent (one owner of
the topic's partition at a time) records each decision once in ``deployment_history``
and dead-letters a record that is not a valid decision (``invalid_deployment``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaError

from phoenix_stream.app import app, deployments_topic, settings
from phoenix_stream.exceptions import PhoenixError, ValidationError
from phoenix_stream.lifecycle.deployments import DeploymentRecord, decode_record
from phoenix_stream.storage.deployments import DeploymentHistory
from phoenix_stream.streaming.batches import run_batches
from phoenix_stream.streaming.records import InRecord, OutRecord

log = logging.getLogger(__name__)


@app.agent(deployments_topic, name="phoenix.deployments")
async def deployments(stream: Any) -> None:
    """Record every decision on ``deployments`` in PostgreSQL."""
    runtime = app.runtime
    history = DeploymentHistory(runtime.sink)

    async def handle(records: Sequence[InRecord]) -> None:
        valid: list[DeploymentRecord] = []
        dead: list[OutRecord] = []
        for record in records:
            try:
                valid.append(decode_record(record.value))
            except ValidationError as exc:
                dead.append(
                    runtime.dead_letters.record(
                        record, "invalid_deployment", str(exc), field=exc.field
                    )
                )
        await history.record(valid)
        if dead:
            await runtime.emitter.emit(dead)

    await run_batches(stream, handle, runtime.failure_policy("deployments"), take=100, within_s=0.2)


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
