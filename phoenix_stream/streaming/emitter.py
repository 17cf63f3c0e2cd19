"""Batched, delivery-checked producing of output records.

One ``create_batch``/``send_batch`` per (topic, partition) instead of one ``send`` per
record, and the call returns only when the broker has acknowledged every batch: callers
ack their input events after that, so a failed produce can never lose a request
(aiokafka's ``flush`` does not raise on a failed batch; the delivery futures do).

A handful of records (an HTTP request's) goes through plain ``send`` instead: aiokafka
then merges concurrent callers into one batch per partition, where a batch each would
queue behind one another (measured: 700 against 4,300 requests/s at 32 connections).

Failures are classified. A broker or network outage is retried with capped backoff
(``phoenix_stream.retrying``) for as long as it lasts (never dead-lettered). A record
the producer or broker will never take (too large, invalid topic, ...:
``PERMANENT_ERRORS``) is first re-sent alone, so that one bad record does not sink the
batch it shared, and if it fails alone it is replaced by a dead letter of kind
``undeliverable`` (``on_undeliverable``), never retried forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

import aiokafka
from aiokafka import errors as kafka_errors
from aiokafka.partitioner import DefaultPartitioner

from phoenix_stream import metrics
from phoenix_stream.exceptions import ProduceError, Undeliverable
from phoenix_stream.messages.records import OutRecord
from phoenix_stream.retrying import Backoff

log = logging.getLogger(__name__)


__all__ = ["PERMANENT_ERRORS", "BatchEmitter", "OutRecord"]

# Errors after which the same record can never be delivered: retrying them would stall
# the partition forever. Everything else (connection, leader, timeout) is an outage.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    Undeliverable,
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.CorruptRecordException,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.UnsupportedVersionError,
    kafka_errors.InvalidRequiredAcksError,
)

OnUndeliverable = Callable[[OutRecord, BaseException], "OutRecord | None"]
Failure = tuple[list[OutRecord], BaseException]


# Below this many records, plain ``send`` (merged across callers) beats a batch of our own.
SMALL_EMIT = 16
# Partition of a key is murmur2 in pure Python (~3 us); entities repeat, so remember it.
_PARTITION_CACHE_MAX = 1_000_000


class BatchEmitter:
    """Produce records in per-partition batches and wait for their delivery."""

    def __init__(
        self,
        producer: Callable[[], aiokafka.AIOKafkaProducer],
        *,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        is_stopping: Callable[[], bool] = lambda: False,
        on_undeliverable: OnUndeliverable = lambda record, error: None,
    ) -> None:
        self._producer = producer
        self._on_undeliverable = on_undeliverable
        self._partitioner = DefaultPartitioner()
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._is_stopping = is_stopping
        self._partitions: dict[tuple[str, bytes | None], int] = {}
        self._partition_counts: dict[str, int] = {}

    async def emit(self, records: Sequence[OutRecord]) -> None:
        """Deliver ``records``; retries outages with backoff until delivered.

        A record that can never be delivered is replaced by what ``on_undeliverable``
        returns (a dead letter) or dropped, and counted. Raises ``ProduceError`` only
        when the process is stopping, so that the caller leaves its input
        unacknowledged (it will be redelivered).
        """
        pending = list(records)
        alone: set[int] = set()  # ids of records to send in a batch of their own
        backoff = Backoff(self._min_backoff_s, self._max_backoff_s)
        while pending:
            failures = await self._send_once(pending, alone)
            if not failures:
                return
            retry: list[OutRecord] = []
            outage = False
            for group, error in failures:
                if not isinstance(error, PERMANENT_ERRORS):
                    outage = True
                    retry.extend(group)
                elif len(group) > 1 or id(group[0]) not in alone:
                    alone.update(id(record) for record in group)
                    retry.extend(group)
                else:
                    retry.extend(self._give_up(group[0], error))
            pending = retry
            if not outage:
                continue
            metrics.PRODUCE_RETRIES.inc()
            if self._is_stopping():
                raise ProduceError(f"stopping with {len(pending)} records undelivered")
            await asyncio.sleep(backoff.next_delay())

    def _give_up(self, record: OutRecord, error: BaseException) -> list[OutRecord]:
        """What replaces a record that failed alone with a permanent error."""
        metrics.UNDELIVERABLE.labels(topic=record.topic).inc()
        replacement = self._on_undeliverable(record, error)
        log.error(
            "a %d-byte record for %s can never be delivered (%r); %s",
            len(record.value or b""),
            record.topic,
            error,
            "dead-lettered" if replacement is not None else "dropped",
        )
        return [] if replacement is None else [replacement]

    async def _send_once(self, records: list[OutRecord], alone: set[int]) -> list[Failure]:
        """Send all records once; return the groups that failed, with their error."""
        producer = self._producer()
        if len(records) < SMALL_EMIT and not alone:
            return await self._send_each(producer, records)
        groups: dict[tuple[str, int], list[OutRecord]] = defaultdict(list)
        for topic in {record.topic for record in records}:
            await self._refresh_partitions(producer, topic)
        cache = self._partitions
        for record in records:
            key = (record.topic, record.key)
            partition = cache.get(key)
            if partition is None:
                partition = self._partition(record)
            groups[(record.topic, partition)].append(record)
        sent: list[tuple[asyncio.Future[object], list[OutRecord]]] = []
        failed: list[Failure] = []
        for (topic, partition), group in groups.items():
            start = 0
            while start < len(group):
                batch = producer.create_batch()
                end = start
                while end < len(group):
                    record = group[end]
                    if end > start and id(record) in alone:
                        break  # it goes in a batch of its own
                    if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                        break
                    end += 1
                    if id(record) in alone:
                        break
                if end == start:
                    error = Undeliverable(
                        f"a {len(group[start].value or b'')}-byte record for {topic} is larger "
                        "than the producer's maximum batch size"
                    )
                    failed.append(([group[start]], error))
                    start += 1
                    continue
                try:
                    future = await producer.send_batch(batch, topic, partition=partition)
                except kafka_errors.KafkaError as exc:
                    failed.append((group[start:end], exc))
                else:
                    sent.append((future, group[start:end]))
                start = end
        return failed + await self._collect(sent)

    async def _send_each(
        self, producer: aiokafka.AIOKafkaProducer, records: list[OutRecord]
    ) -> list[Failure]:
        sent: list[tuple[asyncio.Future[object], list[OutRecord]]] = []
        failed: list[Failure] = []
        for record in records:
            try:  # send() refuses an oversized record at once, before any batch
                future = await producer.send(record.topic, value=record.value, key=record.key)
            except kafka_errors.KafkaError as exc:
                failed.append(([record], exc))
            else:
                sent.append((future, [record]))
        return failed + await self._collect(sent)

    async def _collect(
        self, sent: list[tuple[asyncio.Future[object], list[OutRecord]]]
    ) -> list[Failure]:
        """Wait for every delivery; the groups of failed ones with their errors."""
        failed: list[Failure] = []
        results = await asyncio.gather(*(f for f, _ in sent), return_exceptions=True)
        for result, (_, group) in zip(results, sent, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "delivery of %d records to %s failed: %r",
                    len(group),
                    group[0].topic,
                    result,
                )
                failed.append((group, result))
        return failed

    async def _refresh_partitions(self, producer: aiokafka.AIOKafkaProducer, topic: str) -> None:
        """Know ``topic``'s partition count; forget cached keys if it changed."""
        count = len(await producer.partitions_for(topic))
        if self._partition_counts.get(topic) != count:
            self._partition_counts[topic] = count
            self._partitions = {k: p for k, p in self._partitions.items() if k[0] != topic}

    def _partition(self, record: OutRecord) -> int:
        """The default partitioner's choice (murmur2 of the key, as Java clients do)."""
        partitions = list(range(self._partition_counts[record.topic]))
        partition: int = self._partitioner(record.key, partitions, partitions)
        if record.key is not None:
            if len(self._partitions) >= _PARTITION_CACHE_MAX:
                self._partitions.clear()
            self._partitions[(record.topic, record.key)] = partition
        return partition
