"""Batched, delivery-checked producing of output records.

One ``create_batch``/``send_batch`` per (topic, partition) instead of one ``send`` per
record, and the call returns only when the broker has acknowledged every batch: callers
ack their input events after that, so a failed produce can never lose a request
(aiokafka's ``flush`` does not raise on a failed batch; the delivery futures do).
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
        groups: dict[tuple[str, int], list[OutRecord]] = defaultdict(list)
        for topic in {record.topic for record in records}:
            partitions = sorted(await producer.partitions_for(topic))
            for record in (r for r in records if r.topic == topic):
                partition = self._partitioner(record.key, partitions, partitions)
                groups[(topic, partition)].append(record)
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
