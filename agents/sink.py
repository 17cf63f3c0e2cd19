"""Sink agent: served and shadow predictions into PostgreSQL, acked only after the write.

Writes are batched (up to ``PHOENIX_SINK_BATCH`` rows or ``PHOENIX_SINK_WITHIN_MS``) and
idempotent on ``request_id``; while PostgreSQL is down the sink backs off and retries
the same rows, so nothing is lost and a redelivered record is not stored twice. A record
that is not a prediction, or a row PostgreSQL refuses, is isolated and dead-lettered as
``invalid_prediction`` while the rest of its batch is written. The agent reads raw bytes
and decodes them itself: Faust drops a record it cannot decode without a word
(``Channel.on_decode_error`` is a no-op).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from phoenix_stream import metrics
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.messages.validation import load_json
from phoenix_stream.streaming.batches import run_batches

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp


def register(app: PhoenixApp) -> None:
    """The ``phoenix.sink`` agent, on both prediction topics."""
    settings = app.settings

    # Which table each consumed topic's rows go to.
    table_of = {
        settings.topic("predictions"): "predictions",
        settings.topic("shadow-predictions"): "shadow_predictions",
    }

    @app.agent(app.phoenix_topics.stored_predictions, name="phoenix.sink")
    async def sink(stream: Any) -> None:
        """Store every served and shadow prediction once in PostgreSQL."""
        runtime = app.runtime

        async def handle(records: Sequence[InRecord]) -> None:
            dead: list[OutRecord] = []
            rows: dict[str, list[tuple[InRecord, dict[str, Any]]]] = defaultdict(list)
            for record in records:
                try:
                    row = load_json(record.value or b"")
                except ValueError as exc:
                    dead.append(runtime.dead_letters.record(record, "invalid_json", str(exc)))
                    continue
                if not isinstance(row, dict):
                    error = "a prediction must be a JSON object"
                    dead.append(runtime.dead_letters.record(record, "invalid_prediction", error))
                    continue
                rows[table_of[record.topic]].append((record, row))
            for table, items in rows.items():
                retries_before = runtime.sink.retries
                report = await runtime.sink.write_isolating([row for _, row in items], table=table)
                metrics.SINK_RETRIES.inc(runtime.sink.retries - retries_before)
                metrics.SINK_ROWS.inc(report.written)
                metrics.SINK_DUPLICATES.inc(report.duplicates)
                for index, reason, field in report.rejected:
                    dead.append(
                        runtime.dead_letters.record(
                            items[index][0], "invalid_prediction", reason, field=field
                        )
                    )
            if dead:
                await runtime.emitter.emit(dead)

        await run_batches(
            stream,
            handle,
            runtime.failure_policy("sink"),
            take=settings.sink_batch,
            within_s=settings.sink_within_ms / 1000.0,
        )
