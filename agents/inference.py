"""Inference agent: request records in, predictions and dead letters out.

A thin loop: ``run_batches`` takes up to ``PHOENIX_TAKE_MAX`` events (or what arrived
within ``PHOENIX_TAKE_WITHIN_MS``), cuts them into groups of about
``PHOENIX_CHUNK_REQUESTS`` requests, hands each group to the pipeline under the failure
policy, and acks the events only after every output record was delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from phoenix_stream.app import (
    app,
    dead_letters_topic,
    predictions_topic,
    requests_topic,
    settings,
    shadow_predictions_topic,
)
from phoenix_stream.streaming.batches import run_batches
from phoenix_stream.streaming.records import InRecord


@app.agent(requests_topic, name="phoenix.inference")
async def inference(stream: Any) -> None:
    """Score every request on ``requests``; bad records go to ``dead-letters``."""
    for topic in (predictions_topic, shadow_predictions_topic, dead_letters_topic):
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
