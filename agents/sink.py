"""Sink agent: predictions into PostgreSQL, offsets acked only after the write.

Writes are batched (up to ``PHOENIX_SINK_BATCH`` rows or ``PHOENIX_SINK_WITHIN_MS``) and
idempotent on ``request_id``; while PostgreSQL is down the sink backs off and retries
the same batch, so nothing is lost and a redelivered record is not stored twice.
"""

from __future__ import annotations

from typing import Any

from phoenix_stream import metrics
from phoenix_stream.app import app, predictions_topic, settings
from phoenix_stream.records import Prediction


@app.agent(predictions_topic, name="phoenix.sink")
async def sink(stream: Any) -> None:
    """Store every prediction once in PostgreSQL."""
    store = app.runtime.sink
    within_s = settings.sink_within_ms / 1000.0
    async for events in stream.noack_take(settings.sink_batch, within=within_s):
        rows = [prediction_row(event.value) for event in events]
        written = await store.write_until_done(rows)
        metrics.SINK_ROWS.inc(written)
        metrics.SINK_DUPLICATES.inc(len(rows) - written)
        for event in events:
            await stream.ack(event)


def prediction_row(prediction: Prediction) -> dict[str, Any]:
    """The sink row of a prediction record."""
    row: dict[str, Any] = prediction.asdict()
    return row
