"""Inference agent: request records in, predictions and dead letters out.

The loop takes up to ``PHOENIX_TAKE_MAX`` events (or what arrived within
``PHOENIX_TAKE_WITHIN_MS``), hands their raw bytes to the pipeline, and acks them only
after every output record was delivered: at-least-once, never an ack before delivery.
"""

from __future__ import annotations

from typing import Any

from phoenix_stream.app import (
    app,
    dead_letters_topic,
    predictions_topic,
    requests_topic,
    settings,
    shadow_predictions_topic,
)
from phoenix_stream.streaming.request_pipeline import InRecord


@app.agent(requests_topic, name="phoenix.inference")
async def inference(stream: Any) -> None:
    """Score every request on ``requests``; bad records go to ``dead-letters``."""
    for topic in (predictions_topic, shadow_predictions_topic, dead_letters_topic):
        await topic.maybe_declare()
    pipeline = app.runtime.pipeline
    within_s = settings.take_within_ms / 1000.0
    async for events in stream.noack_take(settings.take_max, within=within_s):
        records = [
            InRecord(m.topic, m.partition, m.offset, m.key, m.value)
            for m in (event.message for event in events)
        ]
        await pipeline.process(records)
        for event in events:
            await stream.ack(event)
