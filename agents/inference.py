"""Inference agent: request records in, predictions and dead letters out.

A thin loop: ``run_batches`` takes up to ``PHOENIX_TAKE_MAX`` events (or what arrived
within ``PHOENIX_TAKE_WITHIN_MS``), cuts them into groups of about
``PHOENIX_CHUNK_REQUESTS`` requests, hands each group to the pipeline under the failure
policy, and acks the events only after every output record was delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from phoenix_stream.messages.records import InRecord
from phoenix_stream.streaming.batches import run_batches

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp


def register(app: PhoenixApp) -> None:
    """The ``phoenix.inference`` agent, on the requests topic."""
    topics, settings = app.phoenix_topics, app.settings

    @app.agent(topics.requests, name="phoenix.inference")
    async def inference(stream: Any) -> None:
        """Score every request on ``requests``; bad records go to ``dead-letters``."""
        for topic in (topics.predictions, topics.shadow_predictions, topics.dead_letters):
            await topic.maybe_declare()
        pipeline = app.runtime.pipeline

        async def handle(records: Sequence[InRecord]) -> None:
            await pipeline.process(records)

        await run_batches(
            stream,
            handle,
            app.runtime.failure_policy("inference"),
            take=settings.take_max,
            within_s=settings.take_within_ms / 1000.0,
            groups=pipeline.groups,
        )
