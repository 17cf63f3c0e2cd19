"""Sink agent: served and shadow predictions into PostgreSQL, acked only after the write.

Writes are batched (up to ``PHOENIX_SINK_BATCH`` rows or ``PHOENIX_SINK_WITHIN_MS``) and
idempotent on ``request_id``; while PostgreSQL is down the sink backs off and retries
the same rows, so nothing is lost and a redelivered record is not stored twice. A record
that is not JSON (``invalid_json``) or not a prediction, or a row PostgreSQL refuses
(``invalid_prediction``), is isolated and dead-lettered while the rest of its batch is
written. The agent reads raw bytes and decodes them itself: Faust drops a record it
cannot decode without a word (``Channel.on_decode_error`` is a no-op).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from phoenix_stream import metrics
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.messages.validation import Rejected, load_json
from phoenix_stream.streaming.consumers import ConsumerSpec, Taken, register_consumer

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

Row = dict[str, Any]


def decode_prediction(record: InRecord) -> Iterable[Row | Rejected]:
    """The prediction row of one record, or why it is not one."""
    original = record.value or b""
    try:
        row = load_json(original)
    except ValueError as exc:
        return [Rejected("invalid_json", str(exc), None, original, None)]
    if not isinstance(row, dict):
        error = "a prediction must be a JSON object"
        return [Rejected("invalid_prediction", error, None, original, None)]
    return [row]


def register(app: PhoenixApp) -> None:
    """The ``phoenix.sink`` agent, on both prediction topics."""
    settings, runtime = app.settings, app.runtime
    sink = runtime.sink
    table_of = {  # which table each consumed topic's rows go to
        settings.topic("predictions"): "predictions",
        settings.topic("shadow-predictions"): "shadow_predictions",
    }

    async def store(taken: Sequence[Taken[Row]]) -> Sequence[OutRecord]:
        rows: dict[str, list[Taken[Row]]] = defaultdict(list)
        for record, row in taken:
            rows[table_of[record.topic]].append((record, row))
        dead: list[OutRecord] = []
        metrics.SINK_BACKLOG.set(len(taken))
        for table, items in rows.items():
            retries_before = sink.retries
            started = time.perf_counter()
            report = await sink.write_isolating([row for _, row in items], table=table)
            # A write that waited out an outage measures the outage, not PostgreSQL.
            if sink.retries == retries_before:
                metrics.SINK_WRITE_DURATION.observe(time.perf_counter() - started)
            metrics.SINK_BACKLOG.dec(len(items))
            metrics.SINK_ROWS.inc(report.written)
            metrics.SINK_DUPLICATES.inc(report.duplicates)
            dead.extend(
                runtime.dead_letters.record(
                    items[index][0], "invalid_prediction", reason, field=field
                )
                for index, reason, field in report.rejected
            )
        return dead

    register_consumer(
        app,
        ConsumerSpec(
            name="sink",
            topic=app.phoenix_topics.stored_predictions,
            decode=decode_prediction,
            handle=store,
            take=settings.sink_batch,
            within_s=settings.sink_within_ms / 1000.0,
        ),
    )
