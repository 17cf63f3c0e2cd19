"""Batched, delivery-checked producing of output records.

One ``create_batch``/``send_batch`` per (topic, partition) instead of one ``send`` per
record, and the call returns only when the broker has acknowledged every batch: callers
ack their input events after that, so a failed produce can never lose a request
(aiokafka's ``flush`` does not raise on a failed batch; the delivery futures do).

A handful of records (an HTTP request's) goes through plain ``send`` instead: aiokafka
then merges concurrent callers into one batch per partition, where a batch each would
queue behind one another (measured: 700 against 4,300 requests/s at 32 connections).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiokafka
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from phoenix_stream import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce: topic, key bytes (partitioning), value bytes."""

    topic: str
    key: bytes | None
    value: bytes


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
    ) -> None:
        self._producer = producer
        self._partitioner = DefaultPartitioner()
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._is_stopping = is_stopping
        self._partitions: dict[tuple[str, bytes | None], int] = {}
        self._partition_counts: dict[str, int] = {}

    async def emit(self, records: Sequence[OutRecord]) -> None:
        """Deliver ``records``; retries failed batches with backoff until delivered.

        Raises the last error only when the process is stopping, so that the caller
        leaves its input unacknowledged (it will be redelivered).
        """
        pending = list(records)
        backoff = self._min_backoff_s
        while pending:
            pending = await self._send_once(pending)
            if not pending:
                return
            metrics.PRODUCE_RETRIES.inc()
            if self._is_stopping():
                raise KafkaError(f"stopping with {len(pending)} records undelivered")
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self._max_backoff_s)

    async def _send_once(self, records: list[OutRecord]) -> list[OutRecord]:
        """Send all records once; return those whose batch failed."""
        producer = self._producer()
        if len(records) < SMALL_EMIT:
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
        for (topic, partition), group in groups.items():
            start = 0
            while start < len(group):
                batch = producer.create_batch()
                end = start
                while end < len(group):
                    record = group[end]
                    if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                        break
                    end += 1
                if end == start:
                    raise ValueError(
                        f"a record for {topic} is larger than the producer's max batch size"
                    )
                future = await producer.send_batch(batch, topic, partition=partition)
                sent.append((future, group[start:end]))
                start = end
        return await self._collect(sent)

    async def _send_each(
        self, producer: aiokafka.AIOKafkaProducer, records: list[OutRecord]
    ) -> list[OutRecord]:
        sent = [(await producer.send(r.topic, value=r.value, key=r.key), [r]) for r in records]
        return await self._collect(sent)

    async def _collect(
        self, sent: list[tuple[asyncio.Future[object], list[OutRecord]]]
    ) -> list[OutRecord]:
        """Wait for every delivery; the records of failed ones."""
        failed: list[OutRecord] = []
        results = await asyncio.gather(*(f for f, _ in sent), return_exceptions=True)
        for result, (_, group) in zip(results, sent, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "delivery of %d records to %s failed: %r; will retry",
                    len(group),
                    group[0].topic,
                    result,
                )
                failed.extend(group)
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
