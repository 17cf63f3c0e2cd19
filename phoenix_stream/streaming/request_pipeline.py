"""One agent batch of raw request records in, output records out.

``RequestPipeline.process`` decodes every record (a request or a batch of requests),
scores the valid ones with the shared ``Predictor``, and produces predictions, shadow
predictions and dead letters together with one ``BatchEmitter.emit``. It returns only
after the broker has acknowledged all of them; the agent acks its events after that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from phoenix_stream import metrics
from phoenix_stream.messages.encoding import encode_dead_letter, encode_prediction
from phoenix_stream.messages.requests import ParsedRequest, RejectedRequest, decode_record
from phoenix_stream.serving.predictor import Outcome, Predictor
from phoenix_stream.streaming.emitter import BatchEmitter, OutRecord


@dataclass(frozen=True, slots=True)
class InRecord:
    """A consumed Kafka record as the pipeline sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Topics:
    """Output topic names."""

    predictions: str
    shadow_predictions: str
    dead_letters: str


@dataclass(frozen=True, slots=True)
class BatchReport:
    """Counts for one processed batch (for metrics, logs and tests)."""

    records: int
    requests: int
    predictions: int
    shadow: int
    dead_letters: int


class RequestPipeline:
    """Decode, predict, encode and emit one batch of request records."""

    def __init__(
        self,
        predictor: Predictor,
        emitter: BatchEmitter,
        topics: Topics,
        *,
        default_model: Callable[[], str],
        max_record_bytes: int,
        max_batch_requests: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._predictor = predictor
        self._emitter = emitter
        self._topics = topics
        self._default_model = default_model
        self._max_record_bytes = max_record_bytes
        self._max_batch_requests = max_batch_requests
        self._clock = clock

    async def process(self, records: Sequence[InRecord]) -> BatchReport:
        """Handle ``records``; returns once every output record is delivered."""
        received_at = self._clock()
        default_model = self._default_model()
        requests: list[ParsedRequest] = []
        origin: dict[int, InRecord] = {}
        out: list[OutRecord] = []
        for record in records:
            for item in decode_record(
                record.value,
                default_model=default_model,
                max_bytes=self._max_record_bytes,
                max_batch=self._max_batch_requests,
            ):
                if isinstance(item, RejectedRequest):
                    out.append(
                        dead_letter_record(
                            self._topics.dead_letters,
                            record,
                            item.original,
                            item.kind,
                            item.error,
                            item.field,
                            item.batch_index,
                            received_at,
                        )
                    )
                else:
                    requests.append(item)
                    origin[id(item)] = record
        metrics.REQUESTS.labels(source="kafka").inc(len(requests))
        outcome = await self._predictor.predict(requests, source="kafka", received_at=received_at)
        for rejection in outcome.rejected:
            record = origin[id(rejection.request)]
            original = rejection.request.original_bytes(record.value or b"")
            out.append(
                dead_letter_record(
                    self._topics.dead_letters,
                    record,
                    original,
                    rejection.kind,
                    rejection.error,
                    rejection.field,
                    rejection.request.batch_index,
                    received_at,
                )
            )
        out.extend(prediction_records(outcome, self._topics))
        await self._emitter.emit(out)
        report = BatchReport(
            len(records),
            len(requests),
            len(outcome.served),
            len(outcome.shadow),
            len(out) - len(outcome.served) - len(outcome.shadow),
        )
        record_outcome_metrics(outcome, "kafka", self._clock() - received_at)
        return report


def dead_letter_record(
    topic: str,
    record: InRecord,
    original: bytes,
    kind: str,
    error: str,
    field: str | None,
    batch_index: int | None,
    failed_at: float,
) -> OutRecord:
    """A dead letter for (part of) ``record``, keyed like it, counted by kind."""
    metrics.DEAD_LETTERS.labels(kind=kind).inc()
    value = encode_dead_letter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        original=original,
        kind=kind,
        error=error,
        field=field,
        batch_index=batch_index,
        failed_at=failed_at,
    )
    return OutRecord(topic, record.key, value)


def prediction_records(outcome: Outcome, topics: Topics) -> list[OutRecord]:
    """Served and shadow predictions as records keyed by entity id."""
    out = [
        OutRecord(topics.predictions, s.entity_id.encode(), encode_prediction(s))
        for s in outcome.served
    ]
    out.extend(
        OutRecord(topics.shadow_predictions, s.entity_id.encode(), encode_prediction(s))
        for s in outcome.shadow
    )
    return out


def record_outcome_metrics(outcome: Outcome, source: str, elapsed_s: float) -> None:
    """Per-batch metric updates (one ``inc`` per label set, not per record)."""
    counts: dict[tuple[str, str, str], int] = {}
    degraded = 0
    for scored in outcome.served:
        label = (scored.model, scored.version, scored.variant)
        counts[label] = counts.get(label, 0) + 1
        degraded += scored.degraded
    for (model, version, variant), count in counts.items():
        metrics.PREDICTIONS.labels(model=model, version=version, variant=variant).inc(count)
    shadow: dict[tuple[str, str], int] = {}
    for scored in outcome.shadow:
        shadow[(scored.model, scored.version)] = shadow.get((scored.model, scored.version), 0) + 1
    for (model, version), count in shadow.items():
        metrics.SHADOW_PREDICTIONS.labels(model=model, version=version).inc(count)
    if degraded:
        metrics.DEGRADED_PREDICTIONS.inc(degraded)
    metrics.LATENCY.labels(source=source).observe(elapsed_s)
    metrics.BATCH_SIZE.observe(len(outcome.served) + len(outcome.rejected))
