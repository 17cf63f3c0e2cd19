"""Faust's Kafka transport: a short fetch wait, no commit over unprocessed records, and
a producer that does not forget topics.

Faust 0.15.3 hard-codes ``fetch_max_wait_ms=1500`` for worker consumers: on a quiet
topic every fetch then idles up to 1.5 s, which made end-to-end p50 380 ms here. The
subclasses below set the wait from ``PHOENIX_FETCH_MAX_WAIT_MS`` before the aiokafka
consumer starts.

Its rebalance handling also loses records: a worker joining under load, with the drift
tables on, lost tens to hundreds of requests or stored predictions in about one run in
three here (tests/integration/test_worker_faults.py). Measured causes, each patched in
``_ShortFetchConsumer`` (at-least-once: whatever is read again is handled again, and
every consumer downstream is idempotent):

- its stream skips the events it finds while flow is suspended or from an earlier group
  generation, and acks them as if processed: such acks are refused;
- its fetch loop drops fetched records on a generation change after the position moved
  past them, and counts the forward jump as a gap to commit over: gaps are committed
  over only on compacted topics, where they are real;
- its commit skips one unprocessed record at the head (it allows a difference of one
  between the committed offset, the next to read, and the lowest processed one);
- what was dropped never comes back while the partition stays: a hole below processed
  records that persists over two commits is sought back and read again.

All of this reaches into private attributes of Faust and aiokafka; it is kept in this
module only, so an upgrade has one place to check.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ConsumerMessage

from phoenix_stream import metrics

log = logging.getLogger(__name__)


class _ShortFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        wait_ms = cast(ShortFetchTransport, transport).fetch_max_wait_ms
        consumer._fetch_max_wait_ms = wait_ms
        log.info("worker consumer fetch_max_wait_ms=%d (Faust's default: 1500)", wait_ms)
        return consumer


class _ShortFetchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ShortFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def ack(self, message: Message) -> bool:
        """Mark ``message`` safe to commit, unless some agent's ack of it was stale.

        An ack given while flow is suspended or for a record of an earlier generation
        (Faust's stream skipping it, or our batch finishing during the rebalance) is
        refused: the offset stays uncommitted and the record is read again.
        """
        if getattr(message, "stale_ack", False) or _is_stale(self.app, message.generation_id):
            metrics.STALE_ACKS_REFUSED.inc()
            return False
        return bool(super().ack(message))

    def _to_message(self, tp: TP, record: Any) -> ConsumerMessage:
        # As Faust's own _to_message: seconds, or None typed as Faust's float.
        timestamp = cast(float, None) if record.timestamp is None else record.timestamp / 1000.0
        return _GuardedMessage(
            record.topic,
            record.partition,
            record.offset,
            timestamp,
            record.timestamp_type,
            record.headers,
            record.key,
            record.value,
            record.checksum,
            record.serialized_key_size,
            record.serialized_value_size,
            tp,
            generation_id=self.app.consumer_generation_id,
        )

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's next commit offset, but never past an unprocessed head record."""
        acked = self._acked.get(tp)
        committed = self._committed_offset.get(tp)
        if acked and committed is not None and min(acked) > committed:
            return None
        offset: int | None = super()._new_offset(tp)
        return offset

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Count skipped offsets as done only where a gap is legitimate (compacted topics).

        Faust treats every forward jump in fetched offsets as a gap to commit over (for
        compaction and transaction markers). Our other topics have no such gaps: a jump
        there means records fetched and then dropped (its fetch loop breaks on a
        generation change and the position has already moved on), and committing over
        them loses them. They are left as a hole, which ``_seek_back_over_holes`` reads
        again.
        """
        if tp.topic in self._compacted_topics():
            await super()._add_gap(tp, offset_from, offset_to)

    def _compacted_topics(self) -> frozenset[str]:
        # Looked up each time (a commit a second): agents subscribe their topics after
        # the consumer starts, so an early answer would miss them.
        return frozenset(
            name
            for topic in self.app.topics
            if getattr(topic, "compacting", False)
            for name in getattr(topic, "topics", ())
        )

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """Commit what was processed; first, read again any hole that has persisted."""
        await self._seek_back_over_holes()
        return bool(await super().commit(topics, start_new_transaction=start_new_transaction))

    async def _seek_back_over_holes(self) -> None:
        """Seek a partition back to its committed offset when records below it were lost.

        A hole: offsets from the committed one up to the lowest processed one that no
        agent holds (every record of a partition reaches an agent in order, so they will
        never come). Faust's rebalance handling leaves them (records fetched but dropped,
        a stale delivery recorded as read); its commit then stalls, and a restart would
        replay everything since. Only a hole seen at two commits in a row, with flow
        active, is sought back: the records come again, those after it twice.
        """
        holes: dict[TP, tuple[int, int]] = {}
        if self.app.flow_control.is_active():
            compacted = self._compacted_topics()
            in_flight: dict[TP, int] = {}
            for message in list(self._unacked_messages):
                if not message.acked and message.refcount > 0:
                    tp = message.tp
                    in_flight[tp] = min(in_flight.get(tp, message.offset), message.offset)
            for tp, acked in list(self._acked.items()):
                committed = self._committed_offset.get(tp)
                if not acked or committed is None or tp.topic in compacted:
                    continue
                lowest = min(acked)
                held = in_flight.get(tp)
                if lowest > committed and (held is None or held > committed):
                    holes[tp] = (committed, lowest)
        previous: dict[TP, tuple[int, int]] = getattr(self, "_holes", {})
        self._holes = holes
        for tp, hole in list(holes.items()):
            if previous.get(tp) == hole:
                log.warning(
                    "%s:%d: offsets %d to %d never reached an agent (left behind by a "
                    "rebalance); reading them again",
                    tp.topic,
                    tp.partition,
                    hole[0],
                    hole[1] - 1,
                )
                metrics.HOLES_REREAD.inc(hole[1] - hole[0])
                await self.seek(tp, hole[0])
                del self._holes[tp]


def _is_stale(app: Any, generation_id: int | None) -> bool:
    """An ack now is stale: flow is suspended (a rebalance), or the record is of an
    earlier group generation."""
    return bool(not app.flow_control.is_active() or generation_id != app.consumer_generation_id)


class _GuardedMessage(ConsumerMessage):
    """A consumed record that remembers a stale ack from any of its agents.

    With several agents on one topic, the last ack decides whether the offset may be
    committed; a stale ack from an earlier agent (its stream skipped the record) must
    still keep the record uncommitted.
    """

    stale_ack = False

    def ack(self, consumer: Any, n: int = 1) -> bool:
        if _is_stale(consumer.app, self.generation_id):
            self.stale_ack = True
        return bool(super().ack(consumer, n))


def track_sent_topics(producer: aiokafka.AIOKafkaProducer) -> aiokafka.AIOKafkaProducer:
    """Make ``producer`` keep the metadata of every topic it sends to; returns it.

    aiokafka 0.14's client asks for the metadata of all topics until a topic is first
    added explicitly (a send to a topic it does not know yet); from then on every refresh
    (every ``metadata_max_age_ms``, 5 minutes by default, or forced by a new topic) asks
    only for the added topics, and the answer replaces its metadata. A topic it only
    ever sent to while it was known is never added, so it drops out at the next refresh.
    A batch queued for it just then has no leader, waits for metadata nobody asks for,
    and expires only after the request timeout (Faust's: 20 minutes): measured here, a
    worker's inference agent stopped for good 5 minutes after start, its delivery
    waiting on such a batch. Every topic sent to is now added before the send, as the
    Java producer does.
    """
    client = producer.client
    wait_on_metadata = client._wait_on_metadata

    async def _wait_on_tracked_metadata(topic: str) -> Any:
        if topic not in client._topics:
            client.add_topic(topic)  # a refresh asks for it from now on
        return await wait_on_metadata(topic)

    client._wait_on_metadata = _wait_on_tracked_metadata
    return producer


class _TrackingProducer(faust_aiokafka.Producer):
    def _new_producer(self, transactional_id: str | None = None) -> aiokafka.AIOKafkaProducer:
        return track_sent_topics(super()._new_producer(transactional_id))


class ShortFetchTransport(faust_aiokafka.Transport):
    """aiokafka transport: worker consumers wait at most ``fetch_max_wait_ms``, and the
    producer keeps the metadata of every topic it sends to."""

    Consumer: ClassVar[type[Any]] = _ShortFetchConsumer
    Producer: ClassVar[type[Any]] = _TrackingProducer
    fetch_max_wait_ms: int = 10


def kafka_producer(app: faust.App) -> aiokafka.AIOKafkaProducer:
    """The aiokafka producer inside Faust's producer (for ``create_batch``/``send_batch``).

    Faust 0.15.3 has no batch send; using its own producer keeps one connection pool and
    lets Faust flush it on shutdown.
    """
    producer = cast(Any, app.producer)._producer
    if producer is None:
        raise RuntimeError("Faust's producer is not started yet")
    return cast(aiokafka.AIOKafkaProducer, producer)


def describe_producer(app: faust.App) -> str:
    """What Faust's producer holds, for a stall's log line (never raises).

    Reads Faust 0.15.3's ``ProducerBuffer`` (``app.producer.buffer.size``: table changelog
    records waiting for ``send_soon``'s task) and aiokafka 0.14's accumulator and sender
    (``_message_accumulator._batches`` queued per partition, ``_pending_batches`` sent and
    unanswered with their age, ``_sender._in_flight`` nodes, ``_muted_partitions``).
    """
    try:
        buffer_size = int(cast(Any, app.producer).buffer.size)
        producer: Any = cast(Any, app.producer)._producer
        if producer is None:
            return f"changelog buffer {buffer_size}; aiokafka producer not started"
        accumulator = producer._message_accumulator
        sender = producer._sender
        queued = {tp: len(batches) for tp, batches in accumulator._batches.items() if batches}
        pending = list(accumulator._pending_batches)
        now = time.monotonic()
        oldest = max((now - batch._ctime for batch in pending), default=0.0)
        return (
            f"changelog buffer {buffer_size}; queued batches {_tps(queued)}; "
            f"{len(pending)} sent and unanswered (oldest {oldest:.0f} s: "
            f"{_tps({b.tp: 1 for b in pending})}); nodes in flight "
            f"{sorted(sender._in_flight)}; muted {_tps({tp: 1 for tp in sender._muted_partitions})}"
        )
    except Exception as exc:  # diagnostics only
        return f"unknown ({exc!r})"


def consumer_flowing(app: faust.App) -> bool:
    """Faust's flow is active and no table recovery runs (else deliveries wait rightly)."""
    return bool(app.flow_control.is_active() and not cast(Any, app).in_recovery)


def consumer_progress(app: faust.App) -> dict[str, tuple[int | None, int | None]]:
    """Per assigned partition of an agent's topic: the last offset Faust's fetch loop
    delivered to the agents, and the broker's high-water mark as last fetched.

    Reads Faust 0.15.3's ``Consumer._read_offset`` (set by ``_drain_messages`` after each
    delivery) and ``Consumer.highwater`` (aiokafka 0.14's, from fetch responses; the
    embedded broker's lags the true end by some records, which only delays a report).
    Topics without acks (table changelogs, read by recovery) are left out.
    """
    consumer: Any = app.consumer
    acks_enabled_for = app.topics.acks_enabled_for
    read_offset = consumer._read_offset
    progress: dict[str, tuple[int | None, int | None]] = {}
    for tp in consumer.assignment():
        if not acks_enabled_for(tp.topic):
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # not assigned any more (a rebalance under way): no data
            highwater = None
        progress[f"{tp.topic}[{tp.partition}]"] = (read_offset.get(tp), highwater)
    return progress


def describe_consumer(app: faust.App) -> str:
    """Faust's consumer state, for a stall's log line (never raises).

    Faust 0.15.3: flow control, ``Consumer._active_partitions`` (fetched),
    ``_paused_partitions`` (recovery), ``_buffered_partitions`` (taken out of the fetch
    because an agent's queue was under pressure, until it drains), and per agent its
    channel queue's size and pending pressure-drop callbacks (``mode`` 0.7's
    ``FlowControlQueue._pending_pressure_drop_callbacks``).
    """
    try:
        consumer: Any = app.consumer
        queues = []
        for agent in app.agents.values():
            for actor in getattr(agent, "_actors", ()):
                queue = actor.stream.channel.queue
                pending = len(getattr(queue, "_pending_pressure_drop_callbacks", ()))
                queues.append(
                    f"{agent.name} {queue.qsize()}/{queue.maxsize} drop-pending {pending}"
                )
        active = dict.fromkeys(consumer._active_partitions or (), 1)
        return (
            f"flow active {app.flow_control.is_active()}, in recovery "
            f"{cast(Any, app).in_recovery}; active {_tps(active)}; "
            f"paused {_tps(dict.fromkeys(consumer._paused_partitions, 1))}; buffered "
            f"{_tps(dict.fromkeys(consumer._buffered_partitions, 1))}; unacked "
            f"{len(consumer._unacked_messages)}; queues: {'; '.join(queues)}"
        )
    except Exception as exc:  # diagnostics only
        return f"unknown ({exc!r})"


def _tps(counts: dict[Any, int]) -> str:
    parts = [f"{tp.topic}[{tp.partition}]x{n}" for tp, n in sorted(counts.items())]
    return "{" + ", ".join(parts[:12]) + (", ..." if len(parts) > 12 else "") + "}"


async def broker_round_trip(app: faust.App) -> None:
    """Ask a broker for cluster metadata over Faust's producer connections (a real request).

    ``AIOKafkaClient.fetch_all_metadata`` (aiokafka 0.14) sends a ``MetadataRequest`` to a
    known broker, trying each in turn, and raises ``KafkaError`` when none answers; the
    client's cached ``cluster`` would report a broker that has gone. No timeout here: the
    caller bounds it (a connection attempt alone may take ``request_timeout_ms``).
    """
    await kafka_producer(app).client.fetch_all_metadata()
