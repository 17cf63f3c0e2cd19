"""Sink agent: predictions into PostgreSQL, offsets acked only after the write.

Writes are batched (up to ``PHOENIX_SINK_BATCH`` rows or ``PHOENIX_SINK_WITHIN_MS``) and
idempotent on ``request_id``; while PostgreSQL is down the sink backs off and retries
the same batch, so nothing is lost and a redelivered record is not stored twice. A row
that PostgreSQL could never take (not JSON, a wrong type) is dead-lettered, not retried
forever. The agent reads raw bytes and decodes them itself: Faust drops a record it cannot
decode without a word (``Channel.on_decode_error`` is a no-op).
"""

from __future__ import annotations

import time
from typing import Any

from phoenix_stream import metrics
from phoenix_stream.app import app, predictions_topic, settings
from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.requests import load_json
from phoenix_stream.streaming.emitter import OutRecord
from phoenix_stream.streaming.request_pipeline import InRecord, dead_letter_record


@app.agent(predictions_topic, name="phoenix.sink")
async def sink(stream: Any) -> None:
    """Store every prediction once in PostgreSQL."""
    runtime = app.runtime
    within_s = settings.sink_within_ms / 1000.0
    async for events in stream.noack_take(settings.sink_batch, within=within_s):
        messages = [event.message for event in events]
        rows: list[dict[str, Any]] = []
        kept: list[Any] = []
        dead: list[OutRecord] = []
        for message in messages:
            try:
                row = load_json(message.value or b"")
            except ValueError as exc:
                dead.append(_dead_letter(message, "invalid_json", f"invalid JSON: {exc}", None))
                continue
            if not isinstance(row, dict):
                reason = "a prediction must be a JSON object"
                dead.append(_dead_letter(message, "invalid_prediction", reason, None))
                continue
            rows.append(row)
            kept.append(message)
        rejects: list[tuple[int, ValidationError]] = []
        written = await runtime.sink.write_until_done(rows, rejects=rejects)
        for index, rejected in rejects:
            field = rejected.field.split(".", 1)[-1]  # "rows[3].score" -> "score"
            dead.append(_dead_letter(kept[index], "invalid_prediction", str(rejected), field))
        if dead:
            await runtime.emitter.emit(dead)
        metrics.SINK_ROWS.inc(written)
        metrics.SINK_DUPLICATES.inc(len(rows) - len(rejects) - written)
        for event in events:
            await stream.ack(event)


def _dead_letter(message: Any, kind: str, error: str, field: str | None) -> OutRecord:
    record = InRecord(message.topic, message.partition, message.offset, message.key, message.value)
    return dead_letter_record(
        settings.topic("dead-letters"),
        record,
        message.value or b"",
        kind,
        error,
        field,
        None,
        time.time(),
    )
