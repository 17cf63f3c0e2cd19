"""One group of raw request records in, output records out.

``RequestPipeline.process`` decodes every record (a request or a batch of requests),
scores the valid ones with the shared ``Predictor`` in chunks of at most
``PHOENIX_CHUNK_REQUESTS`` requests, yielding to the event loop between chunks (so that
``/health`` and the HTTP view keep answering while batch records of 1,000 requests
flow), and produces predictions, shadow predictions and dead letters with one
``BatchEmitter.emit``. It returns only after the broker has acknowledged all of them; the
agent acks its events after that. ``RequestPipeline.groups`` cuts an agent batch into
groups of about ``PHOENIX_CHUNK_REQUESTS`` requests, so that the work of one call (and
its replay when the failure policy isolates a bad record) is bounded in requests, not
in records.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from phoenix_stream import metrics
from phoenix_stream.messages.dead_letters import DeadLetters
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.messages.requests import ParsedRequest, RejectedRequest, decode_record
from phoenix_stream.serving.encoding import encode_prediction
from phoenix_stream.serving.predictor import Outcome, Predictor
from phoenix_stream.streaming.emitter import BatchEmitter

# Every request names its entity: counting this marker (a memchr-speed scan, no parsing)
# estimates a record's requests from above, so that a group can be cut before decoding.
_REQUEST_MARKER = b'"entity_id"'


@dataclass(frozen=True, slots=True)
class Topics:
    """Output topic names."""

    predictions: str
    shadow_predictions: str
    dead_letters: str


@dataclass(frozen=True, slots=True)
class BatchReport:
    """Counts for one processed group (for metrics, logs and tests)."""

    records: int
    requests: int
    predictions: int
    shadow: int
    dead_letters: int


class RequestPipeline:
    """Decode, predict, encode and emit one group of request records."""

    def __init__(
        self,
        predictor: Predictor,
        emitter: BatchEmitter,
        topics: Topics,
        dead_letters: DeadLetters,
        *,
        default_model: Callable[[], str],
        max_record_bytes: int,
        max_batch_requests: int,
        chunk_requests: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._predictor = predictor
        self._emitter = emitter
        self._topics = topics
        self._dead_letters = dead_letters
        self._default_model = default_model
        self._max_record_bytes = max_record_bytes
        self._max_batch_requests = max_batch_requests
        self._chunk_requests = chunk_requests
        self._clock = clock

    def groups(self, records: Sequence[InRecord]) -> Iterator[Sequence[InRecord]]:
        """Consecutive groups of records holding at most about ``chunk_requests`` requests.

        A record holding more than that is a group of its own (its scoring is chunked).
        """
        budget = self._chunk_requests
        start = size = 0
        for index, record in enumerate(records):
            size += max(1, (record.value or b"").count(_REQUEST_MARKER))
            if size >= budget:
                yield records[start : index + 1]
                start, size = index + 1, 0
        if start < len(records):
            yield records[start:]

    async def process(self, records: Sequence[InRecord]) -> BatchReport:
        """Handle ``records``; returns once every output record is delivered."""
        received_at = self._clock()
        default_model = self._default_model()
        requests: list[ParsedRequest] = []
        origin: dict[int, InRecord] = {}
        out: list[OutRecord] = []
        counts = [0, 0, 0]  # requests, predictions, shadow predictions
        starts: list[float] = []  # each served prediction's start (end-to-end latency)
        decoding_s = 0.0
        for record in records:
            decode_started = time.perf_counter()
            items = decode_record(
                record.value,
                default_model=default_model,
                max_bytes=self._max_record_bytes,
                max_batch=self._max_batch_requests,
            )
            decoding_s += time.perf_counter() - decode_started
            for item in items:
                if isinstance(item, RejectedRequest):
                    out.append(
                        self._dead_letters.record(
                            record,
                            item.kind,
                            item.error,
                            field=item.field,
                            original=item.original,
                            batch_index=item.batch_index,
                        )
                    )
                else:
                    requests.append(item)
                    origin[id(item)] = record
            chunk = self._chunk_requests
            while len(requests) >= chunk:  # a batch record may hold several chunks
                await self._score(requests[:chunk], origin, received_at, out, counts, starts)
                requests = requests[chunk:]
        if requests:
            await self._score(requests, origin, received_at, out, counts, starts)
        emit_started = time.perf_counter()
        await self._emitter.emit(out)
        metrics.STAGE_DURATION.labels("emit").observe(time.perf_counter() - emit_started)
        metrics.STAGE_DURATION.labels("decode").observe(decoding_s)
        delivered_at = self._clock()
        metrics.BATCH_DURATION.labels("kafka").observe(delivered_at - received_at)
        observe_end_to_end(starts, delivered_at, "kafka")
        predictions, shadow = counts[1], counts[2]
        return BatchReport(
            len(records), counts[0], predictions, shadow, len(out) - predictions - shadow
        )

    async def _score(
        self,
        requests: list[ParsedRequest],
        origin: dict[int, InRecord],
        received_at: float,
        out: list[OutRecord],
        counts: list[int],
        starts: list[float],
    ) -> None:
        """Score one chunk into ``out``, then let the event loop run other tasks."""
        metrics.REQUESTS.labels(source="kafka").inc(len(requests))
        outcome = await self._predictor.predict(requests, source="kafka", received_at=received_at)
        for rejection in outcome.rejected:
            record = origin[id(rejection.request)]
            out.append(
                self._dead_letters.record(
                    record,
                    rejection.kind,
                    rejection.error,
                    field=rejection.field,
                    original=rejection.request.original_bytes(record.value or b""),
                    batch_index=rejection.request.batch_index,
                )
            )
        out.extend(prediction_records(outcome, self._topics))
        counts[0] += len(requests)
        counts[1] += len(outcome.served)
        counts[2] += len(outcome.shadow)
        starts.extend(end_to_end_starts(outcome))
        record_outcome_metrics(outcome, "kafka", None)
        await asyncio.sleep(0)  # a chunk's CPU work is done: let /health and HTTP run


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


def record_outcome_metrics(outcome: Outcome, source: str, elapsed_s: float | None) -> None:
    """Per-batch metric updates (one ``inc`` per label set, not per record).

    ``elapsed_s`` (seconds from taking the batch to delivering its outputs) is observed
    when given; the Kafka path observes it once per group, after delivery.
    """
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
    if elapsed_s is not None:
        metrics.BATCH_DURATION.labels(source).observe(elapsed_s)
    metrics.BATCH_SIZE.observe(len(outcome.served) + len(outcome.rejected))


def end_to_end_starts(outcome: Outcome) -> list[float]:
    """When each served prediction's request started: its ``sent_at``, else its receipt.

    A ``sent_at`` after the receipt (a producer's clock ahead of ours) is not trusted.
    """
    return [
        s.received_at if s.sent_at is None or s.sent_at > s.received_at else s.sent_at
        for s in outcome.served
    ]


def observe_end_to_end(starts: Sequence[float], done_at: float, source: str) -> None:
    """Observe every prediction's end-to-end latency in one call (one histogram update)."""
    if starts:
        latencies = [done_at - start for start in starts]
        metrics.END_TO_END_LATENCY.labels(source).observe_many(latencies)
