"""End offsets that hold on a broker that reports them wrong: read, not believed.

A partition's end offset (high-water mark) is the offset the next record will get. Tansu
answers ListOffsets with the base offset of the partition's last record batch plus one:
after one batch of 19 records at offsets 0 to 18 it says 1, not 19 (measured here,
tests/integration/test_end_offsets.py). Faust's table recovery reads a changelog
partition up to that end and stops, so every record after the first of the last batch
was missing from the recovered table: the drift window being filled when a worker
stopped came back with some of its counts gone (test_drift.py's restart test, on
Tansu only).

``read_end_offsets`` starts from the reported end and reads the records from the offset
before it: the batch found there, and anything after it, moves the end to one past the
last offset read. On Apache Kafka the record there is the last one and the answer is the
reported end; the read is bounded in time and any failure keeps the reported end, so it
can only move an end forward, never lose one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

__all__ = ["READ_TIMEOUT_S", "read_end_offsets"]

log = logging.getLogger(__name__)

# A bound on the whole read, seconds: generous for a loaded worker (past it, the short
# ends stand), and a recovery waits for it at most once.
READ_TIMEOUT_S = 30.0
_POLL_MS = 200


async def read_end_offsets(
    reported: Mapping[TopicPartition, int | None],
    new_consumer: Callable[[], AIOKafkaConsumer],
    *,
    timeout_s: float = READ_TIMEOUT_S,
) -> dict[TopicPartition, int | None]:
    """``reported`` (ListOffsets' ends), each moved to one past the last offset readable.

    ``new_consumer`` builds a group-less consumer of the same cluster (it is started,
    used and stopped here). Partitions reported empty (end 0 or None) are left as they
    are: there is no batch before their end.
    """
    ends: dict[TopicPartition, int | None] = dict(reported)
    to_read = {tp: end for tp, end in ends.items() if end is not None and end > 0}
    if not to_read:
        return ends
    consumer = new_consumer()
    try:
        await asyncio.wait_for(_read_tails(consumer, to_read, ends), timeout=timeout_s)
    except (TimeoutError, KafkaError, OSError) as exc:
        # Whatever was read so far stands: an end only moves forward.
        log.warning(
            "end offsets: the tail read did not finish (%r); %d partition(s) keep the broker's end",
            exc,
            sum(1 for tp in to_read if ends[tp] == to_read[tp]),
        )
    finally:
        try:
            await consumer.stop()
        except (KafkaError, OSError) as exc:
            log.debug("end offsets: stopping the tail reader failed: %r", exc)
    return ends


async def _read_tails(
    consumer: AIOKafkaConsumer,
    to_read: Mapping[TopicPartition, int],
    ends: dict[TopicPartition, int | None],
) -> None:
    await consumer.start()
    consumer.assign(list(to_read))
    for tp, end in to_read.items():
        consumer.seek(tp, end - 1)
    waiting = set(to_read)
    while waiting:
        batches = await consumer.getmany(*waiting, timeout_ms=_POLL_MS)
        for tp, records in batches.items():
            if records:
                last = max(record.offset for record in records)
                ends[tp] = max(to_read[tp], last + 1)
                waiting.discard(tp)
        # A partition whose offset before the end holds no record (a transaction marker,
        # a compacted or deleted tail) answers nothing: its reported end stands. The
        # position tells: the fetch moved past the offset without records.
        for tp in list(waiting):
            if await consumer.position(tp) > to_read[tp] - 1:
                waiting.discard(tp)
