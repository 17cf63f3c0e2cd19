"""Faust's Kafka transport: a short fetch wait, no commit over unprocessed records, and
a producer that does not forget topics.

Faust 0.15.3 hard-codes ``fetch_max_wait_ms=1500`` for worker consumers: on a quiet
topic every fetch then idles up to 1.5 s, which made end-to-end p50 380 ms here. The
subclasses below set the wait from ``PHOENIX_FETCH_MAX_WAIT_MS`` before the aiokafka
consumer starts.

Its rebalance handling also loses records: a worker joining under load, with the drift
tables on, lost tens to hundreds of requests or stored predictions in about one run in
three on Tansu (tests/integration/test_worker_faults.py). Measured causes, each patched
in ``_ShortFetchConsumer`` (at-least-once: whatever is read again is handled again, and
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
- it seeks from the worker's main thread into aiokafka, which lives in the consumer
  thread and is not thread-safe: every seek is run in the consumer thread (a fetcher crash
  in the gradual-drift scenario, patch (6)).
- its table recovery reads each changelog partition up to the broker's end offset, which
  Tansu reports short (the base of the last batch, plus one): the end is read from the
  log instead, patch (7), and a table recovered after a restart has every write.
- its recovery, ending, resumes flow and so empties every queue, dropping events of the
  current generation already read: a resume drops only earlier generations, patch (9).

Each patch's docstring says whether it is needed on Apache Kafka as well as on Tansu.
The evidence is of two kinds. A unit test drives Faust's own bookkeeping into the state
a rebalance leaves and fails without the patch (tests/unit/streaming/test_transport.py).
And an ablation: the SIGKILL and the two joining tests of test_worker_faults.py, run
with workers whose patches are turned off by scripts/patch_ablation (never part of the
package), counting requests lost (not stored) and predicted twice; one run is the three
tests once, about 10,000 requests. On Kafka (2026-12): with the patches, 1 run, 0 lost;
with each of (1)-(4) off alone, 2-3 runs, 0 lost; with all four off, 3 runs, 0 lost. On
Tansu with all four off, 1 run: 8 requests lost (the joining test with every agent).
None of the four is shown needed on Kafka in these few runs, yet all four flaws are in
Faust's client code, whatever the broker (the broker only decides how often a rebalance
finds records in flight), so each is kept on both brokers.
It also picks a group protocol by the worker's tables, so that workers with different
agent sets could not share a group; every worker now uses Faust's assignor. And
``group_membership`` reads whether the worker is in its group (for ``/ready``).

All of this reaches into private attributes of Faust and aiokafka; it is kept in this
module only, so an upgrade has one place to check. That is why the module is longer than
the 400 lines the others keep under.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import aiokafka
import faust
from aiokafka import TopicPartition
from aiokafka import errors as kafka_errors
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ConsumerMessage
from mode.utils.queues import FlowControlEvent

from phoenix_stream import metrics
from phoenix_stream.streaming.end_offsets import read_end_offsets
from phoenix_stream.streaming.fetch_wait import FetchWait, PartitionAnswer

log = logging.getLogger(__name__)


# A worker out of its group after a refused join tries again this often, seconds; and
# logs it at most this often, seconds.
JOIN_RETRY_S = 1.0
JOIN_REFUSED_LOG_S = 30.0
# A fetch that starved partitions is logged at most this often, seconds.
STARVED_LOG_S = 30.0
# JoinGroup errors that aiokafka 0.14 treats as fatal (it never retries them by itself).
_JOIN_REFUSALS: tuple[type[BaseException], ...] = (
    kafka_errors.InconsistentGroupProtocolError,
    kafka_errors.InvalidSessionTimeoutError,
    kafka_errors.InvalidGroupIdError,
)
_JOIN_REFUSAL_HINTS: dict[type[BaseException], str] = {
    kafka_errors.InconsistentGroupProtocolError: (
        "members of the group use another group protocol than Faust's: workers of an "
        "older phoenix-stream without tables use 'roundrobin'; stop them, or give this "
        "worker another PHOENIX_APP_ID"
    ),
    kafka_errors.InvalidSessionTimeoutError: (
        "the broker does not accept PHOENIX_SESSION_TIMEOUT_S (see its "
        "group.min/max.session.timeout.ms)"
    ),
}


class _ShortFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Patch (5), the short fetch wait (Faust 0.15.3 passes ``fetch_max_wait_ms=1500``).

    Needed on Kafka: yes by the protocol, not measured on Kafka: a broker holds a fetch
    that has less than ``fetch_min_bytes`` for up to the wait the client sends, and
    Kafka does so as Tansu does. Client-side, so it applies on both brokers.
    """

    join_refused: str | None = None  # why the broker refused the latest join, if it did

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        wait_ms = cast(ShortFetchTransport, transport).fetch_max_wait_ms
        consumer._fetch_max_wait_ms = wait_ms
        log.info("worker consumer fetch_max_wait_ms=%d (Faust's default: 1500)", wait_ms)
        # One group protocol for every worker, whatever its agents. Faust 0.15.3 offers
        # its own assignor (protocol "faust") only when the app has changelog tables or
        # standbys, else aiokafka's round robin (protocol "roundrobin"): a worker with the
        # drift tables and one without have no protocol in common, and the broker refuses
        # the second one's JoinGroup (InconsistentGroupProtocolError, fatal: it never
        # joins). Faust's assignor gives each topic only to the members subscribed to it,
        # so workers with different agent sets share the group. Read by start(), which
        # builds the GroupCoordinator.
        self._assignor = self.app.assignor
        consumer._partition_assignment_strategy = [self.app.assignor]
        return consumer

    async def on_start(self) -> None:
        # In the consumer thread's loop, where the aiokafka consumer and its futures live.
        await super().on_start()
        self._join_watch = asyncio.get_running_loop().create_task(self._watch_join_refusals())
        if self._consumer is not None:
            base_ms = cast(ShortFetchTransport, self.transport).fetch_max_wait_ms
            adapt_fetch_wait(self._consumer._fetcher, FetchWait(base_ms))

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        """Patch (7): the end offsets table recovery reads up to, read from the log.

        Faust's recovery stops at ListOffsets' end, and Tansu reports the base offset
        of the last batch plus one: the rest of the last batch of changelog records was
        missing from every recovered table (``end_offsets`` says how it is read).
        Needed on Kafka: no, its ends are right, and the read finds the same ends there;
        kept on both brokers so that one code path is tested on both.
        test_end_offsets.py shows the broker's answer and the read one on both.
        """
        reported = await super()._highwaters(partitions)
        ends = await read_end_offsets(
            {TopicPartition(tp.topic, tp.partition): end for tp, end in reported.items()},
            self._new_tail_reader,
        )
        # None (no end known) passes through as Faust's own answer has it.
        return cast(Mapping[TP, int], {TP(tp.topic, tp.partition): end for tp, end in ends.items()})

    def _new_tail_reader(self) -> aiokafka.AIOKafkaConsumer:
        # Group-less, on the worker consumer's cluster with its credentials.
        conf = self.app.conf
        transport = cast(Any, self.transport)
        return aiokafka.AIOKafkaConsumer(
            bootstrap_servers=faust_aiokafka.server_list(transport.url, transport.default_port),
            client_id=f"{conf.broker_client_id}-end-offsets",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=100,
            **faust_aiokafka.credentials_to_aiokafka_auth(
                conf.broker_credentials, conf.ssl_context
            ),
        )

    async def on_thread_stop(self) -> None:
        watch: asyncio.Task[None] | None = getattr(self, "_join_watch", None)
        if watch is not None:
            watch.cancel()
        await super().on_thread_stop()

    async def _watch_join_refusals(self) -> None:
        """Hand a refused join back to the coordinator, so that it tries again; log it.

        aiokafka 0.14's coordinator keeps a fatal JoinGroup error (another group protocol
        among the members, ...) for the next ``getmany`` and waits until one takes it; but
        Faust fetches only once partitions are assigned, so a worker refused once never
        tried again: alive, answering HTTP, out of its group for good. Taken here, the
        coordinator joins again about every JOIN_RETRY_S; ``group_membership`` reports
        the reason (``/ready``), the log says it every JOIN_REFUSED_LOG_S.
        """
        last_logged = float("-inf")
        while True:
            await asyncio.sleep(JOIN_RETRY_S)
            coordinator = getattr(self._consumer, "_coordinator", None)
            pending = getattr(coordinator, "_pending_exception", None)
            if coordinator is None or coordinator.generation >= 0:
                self.join_refused = None
                continue
            if not isinstance(pending, _JOIN_REFUSALS):
                continue
            try:
                coordinator.check_errors()  # what getmany would do: hands us the error
            except _JOIN_REFUSALS as exc:
                self.join_refused = (
                    f"{type(exc).__name__}: {_JOIN_REFUSAL_HINTS.get(type(exc), exc)}"
                )
                now = time.monotonic()
                if now - last_logged >= JOIN_REFUSED_LOG_S:
                    last_logged = now
                    log.error(
                        "the broker refused this worker's join of consumer group %r (%s); "
                        "it stays out of the group (/ready fails) and tries again",
                        self.app.conf.id,
                        self.join_refused,
                    )


def adapt_fetch_wait(fetcher: Any, wait: FetchWait) -> None:
    """Patch (8): lengthen the fetch wait while the broker starves partitions.

    Wraps aiokafka 0.14's ``Fetcher._proc_fetch_request`` (one fetch to one node, its
    answer put in ``_records``); after each answer the next request's wait
    (``_fetch_max_wait_ms``, read when the request is built) comes from ``wait``
    (``fetch_wait`` says why). Needed on Kafka: no, Kafka sends what it has whatever the
    wait; on Tansu under CPU contention a partition was starved for minutes without it
    (the gradual drift scenario). Client-side and harmless where nothing starves, so on
    both brokers. tests/unit/streaming/test_fetch_wait.py drives it with answers like
    Tansu's; tests/integration/test_fetch_wait.py starves a partition for real on both.
    """
    original = fetcher._proc_fetch_request
    last_logged = float("-inf")
    metrics.FETCH_WAIT.set(wait.current_ms / 1000.0)

    async def proc_fetch_request(assignment: Any, node_id: int, request: Any) -> bool:
        nonlocal last_logged
        woke = bool(await original(assignment, node_id, request))
        if not assignment.active:
            return woke  # the answer was dropped: it says nothing about the broker
        answers: dict[TopicPartition, PartitionAnswer] = {}
        for topic, partitions in request.topics:
            for partition, offset, _max_bytes in partitions:
                tp = TopicPartition(topic, partition)
                state = assignment.state_value(tp)
                if state is None or not state.has_valid_position or state.position != offset:
                    continue  # sought or reset meanwhile: aiokafka dropped its answer
                answers[tp] = PartitionAnswer(offset, tp in fetcher._records, state.highwater)
        before = wait.current_ms
        starved = cast(list[TopicPartition], wait.after_fetch(answers))
        fetcher._fetch_max_wait_ms = wait.current_ms
        metrics.FETCH_WAIT.set(wait.current_ms / 1000.0)
        if starved:
            metrics.FETCH_STARVED.inc(len(starved))
            now = time.monotonic()
            if now - last_logged >= STARVED_LOG_S:
                last_logged = now
                tp, answer = starved[0], answers[starved[0]]
                log.log(
                    logging.WARNING if wait.current_ms >= wait.max_ms else logging.INFO,
                    "the broker answered fetches twice with no records for %d partition%s "
                    "with records waiting (%s[%d] at %d, high-water %s); fetch wait %d -> %d ms",
                    len(starved),
                    "" if len(starved) == 1 else "s",
                    tp.topic,
                    tp.partition,
                    answer.offset,
                    answer.highwater,
                    before,
                    wait.current_ms,
                )
        return woke

    fetcher._proc_fetch_request = proc_fetch_request


async def _seek_now(thread: faust_aiokafka.AIOKafkaConsumerThread, tp: TP, offset: int) -> None:
    """``thread.seek`` as the coroutine ``call_thread`` runs in the consumer thread."""
    thread.seek(tp, offset)


class _ShortFetchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ShortFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _seek(self, partition: TP, offset: int) -> None:
        """Seek in the consumer thread, where aiokafka's fetcher and its futures live.

        Patch (6). Faust 0.15.3 calls aiokafka's ``seek`` from the caller's thread (the
        worker's main loop: the hole re-reads below, Faust's seek when flow is not
        active). aiokafka is not thread-safe: the seek deletes the partition's fetched
        records while the consumer thread iterates them (``KeyError`` in
        ``Fetcher.fetched_records``: the fetcher service crashed and the worker with it,
        seen in the gradual drift scenario under CPU contention), and it completes
        futures of the consumer thread's loop from another thread, a wake-up that loop
        does not see until something else wakes it (partitions with records waiting
        that reached no agent for 20 s to minutes, in the same runs). Broker-agnostic:
        the race is in the client. test_seek_runs_in_the_consumer_thread fails without it.
        """
        thread = self._thread
        if asyncio.get_running_loop() is thread.thread_loop:
            thread.seek(partition, offset)
        else:
            await thread.call_thread(_seek_now, thread, partition, offset)

    def ack(self, message: Message) -> bool:
        """Mark ``message`` safe to commit, unless some agent's ack of it was stale.

        Patch (1), with ``_GuardedMessage``. An ack given while flow is suspended or for
        a record of an earlier generation (Faust 0.15.3's ``Stream._py_aiter`` skipping
        it, or our batch finishing during the rebalance) is refused: the offset stays
        uncommitted and the record is read again.

        Needed on Kafka: not shown, kept for a client-side flaw. Off on Kafka: alone, 3
        runs, 0 lost; with (2)-(4), 3 runs, 0 lost (all four off on Tansu: 8 lost in 1
        run). The skip-and-ack is in Faust's stream whatever the broker; the unit test
        test_faust_commits_a_skipped_record_the_patch_does_not fails without it.
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
        """Faust's next commit offset, but never past an unprocessed head record.

        Patch (3). Faust 0.15.3 returns ``None`` only when the lowest processed offset is
        more than one past the committed one (the next to read), so a single
        unprocessed record at the head is committed over.

        Needed on Kafka: not shown, kept for a client-side flaw (pure bookkeeping, no
        broker in it). Off on Kafka: alone, 2 runs, 0 lost; all four, 3 runs, 0 lost.
        test_faust_commits_over_the_head_record_the_patch_does_not fails without it.
        """
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

        Patch (2) (Faust 0.15.3 ``Consumer._drain_messages``, aiokafka 0.14's fetcher has
        already moved the position when Faust's loop breaks). It assumes no
        transactional producer writes to these topics: aiokafka skips control records
        (``fetcher.py``), which would leave one-offset holes that are read again without
        end. Needed on Kafka: not shown, kept for a client-side flaw. Off on Kafka:
        alone, 2 runs, 0 lost; all four, 3 runs, 0 lost.
        test_faust_commits_over_dropped_records_the_patch_does_not fails without it.
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

        Patch (4). Needed on Kafka: not shown, kept: it closes the holes that (1) and (2)
        leave on purpose, so it goes with them; without it a hole stalls the commit
        until the partition moves. Off on Kafka: alone, 2 runs, 0 lost; all four, 3
        runs, 0 lost. test_a_hole_seen_at_two_commits_is_read_again fails without it.
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


@dataclass(frozen=True)
class GroupMembership:
    """The worker consumer's place in its consumer group, as its coordinator knows it."""

    group_id: str
    member_id: str  # "" until the broker accepted a JoinGroup
    generation: int  # -1 until then
    refused: str | None = None  # why the broker refused the latest join, if it did

    @property
    def joined(self) -> bool:
        """True while the worker is a member of its group (a generation is known)."""
        return bool(self.member_id) and self.generation >= 0


def group_membership(app: faust.App) -> GroupMembership:
    """Where the worker stands in its consumer group (``joined`` False before it started).

    Faust's consumer thread holds the aiokafka consumer, whose ``GroupCoordinator``
    (aiokafka 0.14) sets ``member_id`` and ``generation`` from an accepted JoinGroup and
    resets them when the broker no longer knows the member (session expired). Two plain
    attributes, read from the web thread's loop: no lock needed.
    """
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    coordinator = getattr(consumer, "_coordinator", None)
    member_id = getattr(coordinator, "member_id", "") or ""
    generation = getattr(coordinator, "generation", -1)
    refused = getattr(thread, "join_refused", None)
    return GroupMembership(str(app.conf.id), str(member_id), int(generation), refused)


class GenerationFlowControl(FlowControlEvent):
    """Faust's flow control, but a resume drops only events of an earlier generation.

    Patch (9). Faust 0.15.3 empties every stream, channel and changelog queue when flow
    resumes, to drop what a rebalance left in them. Its recovery resumes flow at its
    end, after it resumed the stream partitions and sought them to the committed
    offsets, while the fetcher goes on delivering: the events of the current generation
    queued at that moment were dropped, their offsets already read, and came back only
    when patch (4) found the hole about 3 s later. A worker restarted mid-window with
    the drift tables on lost up to three heads of ``drift-counts`` partitions that way,
    and its drift window closed without them (2 of 3 runs on Tansu,
    tests/integration/test_drift.py ``test_restart_mid_window_carries_the_run_on``).
    What a rebalance left behind is still dropped: the revoke's ``clear`` is Faust's,
    and a resume drops every event of an earlier generation.

    Needed on Kafka: a client-side flaw, whatever the broker (the broker only decides
    how often a resume finds events queued);
    test_a_resume_keeps_the_current_generation_faust_drops_it fails without it.
    """

    def __init__(self, current_generation: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._current_generation = current_generation

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()
        generation = self._current_generation()
        for queue in list(self._queues):
            items: Any = cast(Any, queue)._queue  # asyncio.Queue's deque, as Faust's clear
            kept = [item for item in items if not _of_earlier_generation(item, generation)]
            items.clear()
            items.extend(kept)


def _of_earlier_generation(item: Any, generation: int) -> bool:
    """A queued event (anything with a consumed message) of another group generation."""
    message = getattr(item, "message", None)
    item_generation = getattr(message, "generation_id", None)
    return item_generation is not None and item_generation != generation


def _is_stale(app: Any, generation_id: int | None) -> bool:
    """An ack now is stale: flow is suspended (a rebalance), or the record is of an
    earlier group generation."""
    return bool(not app.flow_control.is_active() or generation_id != app.consumer_generation_id)


class _GuardedMessage(ConsumerMessage):
    """A consumed record that remembers a stale ack from any of its agents.

    With several agents on one topic, the last ack decides whether the offset may be
    committed; a stale ack from an earlier agent (its stream skipped the record) must
    still keep the record uncommitted. Part of patch (1); see ``_ShortFetchConsumer.ack``.
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

    Patch (6). Needed on Kafka: yes, a client-side flaw:
    tests/integration/test_producer_metadata.py shows the stock client forgetting a
    topic on both brokers (its ``[kafka]`` run), and this function keeping it.
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


def describe_fetcher(app: faust.App) -> str:
    """aiokafka's fetcher state per assigned partition, for a stall's log line (never raises).

    The layer under Faust's drain loop: aiokafka 0.14's ``SubscriptionState`` per
    partition (position, status, paused, last fetched high-water mark) and its
    ``Fetcher`` (``_records``: fetched and not yet handed to Faust, ``_in_flight``: nodes
    with a fetch request out, whether the fetch routine task still runs). Read from the
    main thread without a lock: a snapshot that may be a moment old, enough to tell
    which layer holds a partition that no agent gets records of.
    """
    try:
        kafka: Any = cast(Any, app.consumer)._thread._consumer
        if kafka is None:
            return "aiokafka consumer not started"
        assignment = kafka._subscription.subscription.assignment
        fetcher = kafka._fetcher
        parts = []
        for tp in sorted(assignment.tps):
            state = assignment.state_value(tp)
            position = state._position if state is not None else None
            status = getattr(getattr(state, "_status", None), "name", "?")
            buffered = fetcher._records.get(tp)
            parts.append(
                f"{tp.topic}[{tp.partition}] at {position} {status}"
                f"{' paused' if state is not None and state.paused else ''} "
                f"hw {getattr(state, 'highwater', None)}"
                f"{' fetched-undelivered' if buffered is not None else ''}"
            )
        routine = fetcher._fetch_task
        return (
            f"fetch routine {'ended' if routine.done() else 'running'}; "
            f"fetch wait {fetcher._fetch_max_wait_ms} ms; nodes in flight "
            f"{sorted(fetcher._in_flight)}; pending tasks {len(fetcher._pending_tasks)}; "
            + "; ".join(parts)
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


@dataclass(frozen=True)
class ClusterHealth:
    """What one metadata answer says of the cluster and of the partitions of ``topics``.

    ``brokers`` are the node ids the cluster advertises now; ``missing`` those seen
    earlier by this worker and gone; ``under_replicated`` and ``leaderless`` map a topic
    to its partitions with fewer in-sync replicas than replicas, or with no leader.
    """

    brokers: tuple[int, ...]
    missing: tuple[int, ...]
    under_replicated: dict[str, list[int]]
    leaderless: dict[str, list[int]]

    def to_json(self) -> dict[str, object]:
        """The JSON form ``/ready`` answers with."""
        return {
            "brokers": list(self.brokers),
            "missing_brokers": list(self.missing),
            "under_replicated": self.under_replicated,
            "leaderless": self.leaderless,
        }


async def cluster_health(app: faust.App, topics: Iterable[str], seen: set[int]) -> ClusterHealth:
    """One metadata round trip (as ``broker_round_trip``), read for replicas and leaders.

    ``seen`` collects every broker id answered so far (the caller keeps it), so that a
    broker that has gone from the answer can be named.

    aiokafka 0.14 keeps each partition's replicas and in-sync replicas only in the private
    ``ClusterMetadata._partitions``; the public accessors give leaders alone. On Tansu
    every partition has one replica, so nothing is ever under-replicated there.
    """
    metadata: Any = await kafka_producer(app).client.fetch_all_metadata()
    brokers = tuple(sorted(broker.nodeId for broker in metadata.brokers()))
    seen.update(brokers)
    under: dict[str, list[int]] = {}
    leaderless: dict[str, list[int]] = {}
    partitions: dict[str, dict[int, Any]] = metadata._partitions
    for topic in topics:
        for number, partition in sorted(partitions.get(topic, {}).items()):
            if partition.leader == -1:
                leaderless.setdefault(topic, []).append(number)
            if len(partition.isr) < len(partition.replicas):
                under.setdefault(topic, []).append(number)
    missing = tuple(sorted(seen - set(brokers)))
    return ClusterHealth(brokers, missing, under, leaderless)
