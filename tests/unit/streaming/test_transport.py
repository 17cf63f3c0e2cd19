"""The consumer patches: no commit over a record that no agent processed.

Faust 0.15.3's rebalance handling can drop fetched records (its fetch loop breaks on a
generation change after the position moved on), ack records its stream skipped, and
commit over forward jumps in offsets. These tests drive each patch on a consumer built
without a broker, the last three through Faust's own bookkeeping (each fails without its
patch); a real worker's consumer runs them in every integration test, and workers joining
under load, with every agent and table on, in tests/integration/test_worker_faults.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from intervaltree import IntervalTree
from mode.threads import QueueServiceThread
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from phoenix_stream import metrics
from phoenix_stream.streaming.transport import (
    GenerationFlowControl,
    _GuardedMessage,
    _ShortFetchConsumer,
)

REQUESTS = TP("requests", 0)
DEPLOYMENTS = TP("deployments", 0)


class _Topic:
    def __init__(self, name: str, *, compacting: bool) -> None:
        self.topics = (name,)
        self.compacting = compacting


class _App:
    def __init__(self, generation: int) -> None:
        self.flow_control = FlowControlEvent(initially_suspended=False)
        self.consumer_generation_id = generation
        self.topics = [
            _Topic("requests", compacting=False),
            _Topic("deployments", compacting=True),
        ]


class _Message:
    def __init__(self, offset: int = 0, generation: int = 7, refcount: int = 0) -> None:
        self.tp = REQUESTS
        self.topic, self.partition, self.offset = REQUESTS.topic, REQUESTS.partition, offset
        self.generation_id = generation
        self.refcount = refcount
        self.acked = False


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """What reached Faust's own methods (ack, gap bookkeeping, commit) and seeks."""
    seen: dict[str, list[Any]] = {"ack": [], "gap": [], "commit": [], "seek": [], "offset": []}

    def ack(self: Any, message: Any) -> bool:
        seen["ack"].append(message)
        return True

    async def add_gap(self: Any, tp: TP, offset_from: int, offset_to: int) -> None:
        seen["gap"].append((tp, offset_from, offset_to))

    async def commit(self: Any, *args: Any, **kwargs: Any) -> bool:
        seen["commit"].append(args)
        return True

    def new_offset(self: Any, tp: TP) -> int:
        seen["offset"].append(tp)
        return 999

    monkeypatch.setattr(faust_aiokafka.Consumer, "ack", ack)
    monkeypatch.setattr(faust_aiokafka.Consumer, "_new_offset", new_offset)
    monkeypatch.setattr(faust_aiokafka.Consumer, "_add_gap", add_gap)
    monkeypatch.setattr(faust_aiokafka.Consumer, "commit", commit)
    return seen


def _bare_consumer(seeks: list[Any]) -> Any:
    """The patched consumer without a broker or thread; its seeks land in ``seeks``."""
    patched: Any = _ShortFetchConsumer.__new__(_ShortFetchConsumer)
    patched.app = _App(generation=7)
    patched._acked = {}
    patched._committed_offset = {}
    patched._unacked_messages = set()

    async def seek(tp: TP, offset: int) -> None:
        seeks.append((tp, offset))

    patched.seek = seek
    return patched


@pytest.fixture
def consumer(calls: dict[str, list[Any]]) -> Any:
    return _bare_consumer(calls["seek"])


def test_an_ack_of_the_current_generation_with_flow_active_is_kept(
    consumer: Any, calls: dict[str, list[Any]]
) -> None:
    message = _Message(generation=7)
    assert consumer.ack(message) is True
    assert calls["ack"] == [message]


def test_an_ack_while_flow_is_suspended_is_refused(
    consumer: Any, calls: dict[str, list[Any]]
) -> None:
    refused_before = metrics.STALE_ACKS_REFUSED._value.get()
    consumer.app.flow_control.suspend()  # a rebalance (or a stop) is under way
    assert consumer.ack(_Message(generation=7)) is False
    assert calls["ack"] == []
    assert metrics.STALE_ACKS_REFUSED._value.get() == refused_before + 1
    consumer.app.flow_control.resume()
    assert consumer.ack(_Message(generation=7)) is True  # once it ended, acks count again


def test_an_ack_of_a_record_from_an_earlier_generation_is_refused(
    consumer: Any, calls: dict[str, list[Any]]
) -> None:
    assert consumer.ack(_Message(generation=6)) is False  # fetched before the rebalance
    assert calls["ack"] == []


def guarded(offset: int, generation: int = 7) -> _GuardedMessage:
    return _GuardedMessage(
        REQUESTS.topic,
        0,
        offset,
        None,
        None,
        None,
        b"k",
        b"v",
        None,
        1,
        1,
        REQUESTS,
        generation_id=generation,
    )


def test_a_stale_ack_by_one_of_two_agents_keeps_the_record_uncommitted(
    consumer: Any, calls: dict[str, list[Any]]
) -> None:
    message = guarded(100)
    message.incref(2)  # the sink and the drift collector both got it
    consumer.app.flow_control.suspend()
    assert message.ack(consumer) is False  # the drift collector's stream skipped it
    consumer.app.flow_control.resume()
    assert message.ack(consumer) is False  # the sink's ack is the last, yet refused
    assert calls["ack"] == []
    fresh = guarded(100)  # read again after the rebalance
    fresh.incref(2)
    assert fresh.ack(consumer) is False and fresh.ack(consumer) is True
    assert calls["ack"] == [fresh]


def test_the_commit_offset_never_passes_an_unprocessed_head_record(
    consumer: Any, calls: dict[str, list[Any]]
) -> None:
    consumer._committed_offset[REQUESTS] = 100  # the next offset to read
    consumer._acked[REQUESTS] = [101, 102]  # 100 not processed (Faust would commit 103)
    assert consumer._new_offset(REQUESTS) is None
    assert calls["offset"] == []
    consumer._acked[REQUESTS] = [100, 101, 102]
    assert consumer._new_offset(REQUESTS) == 999  # Faust's own bookkeeping from here
    assert calls["offset"] == [REQUESTS]


async def test_a_jump_in_offsets_is_committed_over_only_on_a_compacted_topic(
    consumer: Any, calls: dict[str, list[Any]]
) -> None:
    await consumer._add_gap(REQUESTS, 11, 40)  # dropped records: never "done"
    await consumer._add_gap(DEPLOYMENTS, 3, 9)  # compaction removed them: done
    assert calls["gap"] == [(DEPLOYMENTS, 3, 9)]


async def test_a_compacted_topic_subscribed_after_the_first_commit_is_recognised(
    consumer: Any, calls: dict[str, list[Any]]
) -> None:
    subscribed = consumer.app.topics
    consumer.app.topics = []  # the consumer starts before the agents subscribe
    await consumer.commit()
    consumer.app.topics = subscribed
    await consumer._add_gap(DEPLOYMENTS, 3, 9)
    assert calls["gap"] == [(DEPLOYMENTS, 3, 9)]


async def test_a_hole_seen_at_two_commits_is_read_again(
    consumer: Any, calls: dict[str, list[Any]]
) -> None:
    reread_before = metrics.HOLES_REREAD._value.get()
    consumer._committed_offset[REQUESTS] = 100
    consumer._acked[REQUESTS] = [105, 106]  # 100-104 never reached an agent
    await consumer.commit()
    assert calls["seek"] == []  # once could be a moment: wait for the next commit
    await consumer.commit()
    assert calls["seek"] == [(REQUESTS, 100)]
    assert metrics.HOLES_REREAD._value.get() == reread_before + 5
    assert len(calls["commit"]) == 2  # Faust's commit ran every time


async def test_a_record_still_held_by_an_agent_is_no_hole(
    consumer: Any, calls: dict[str, list[Any]]
) -> None:
    consumer._committed_offset[REQUESTS] = 100
    consumer._acked[REQUESTS] = [105]
    held = _Message(offset=100, refcount=1)  # taken, its batch not done (an outage)
    consumer._unacked_messages.add(held)
    for _ in range(3):
        await consumer.commit()
    assert calls["seek"] == []
    consumer._unacked_messages.discard(held)
    held_then_skipped = _Message(offset=100, refcount=0)  # its ack was refused
    consumer._unacked_messages.add(held_then_skipped)
    await consumer.commit()
    await consumer.commit()
    assert calls["seek"] == [(REQUESTS, 100)]


async def test_no_seek_while_flow_is_suspended_or_when_the_hole_moves(
    consumer: Any, calls: dict[str, list[Any]]
) -> None:
    consumer._committed_offset[REQUESTS] = 100
    consumer._acked[REQUESTS] = [105]
    consumer.app.flow_control.suspend()  # a rebalance: Faust seeks by itself after it
    await consumer.commit()
    await consumer.commit()
    consumer.app.flow_control.resume()
    await consumer.commit()
    consumer._committed_offset[REQUESTS] = 101  # progress: not the same hole
    await consumer.commit()
    assert calls["seek"] == []
    consumer._acked[REQUESTS] = [101, 105]  # contiguous from the committed offset
    await consumer.commit()
    await consumer.commit()
    assert calls["seek"] == []


# Faust's own bookkeeping (nothing replaced), in the state a rebalance leaves: each test
# shows the flaw in Faust 0.15.3 through its own methods, then that the patch closes it.
# Remove a patch and its test fails; once Faust fixes a flaw, the stock half fails.


class _Topics(list[_Topic]):
    def acks_enabled_for(self, topic: str) -> bool:
        return True


@pytest.fixture
def stock() -> Any:
    """The patched consumer over Faust's own state containers; Faust's methods unpatched."""
    consumer = _bare_consumer([])
    consumer.app.topics = _Topics(consumer.app.topics)
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._gap = defaultdict(IntervalTree)
    consumer._n_acked = 0
    consumer._waiting_for_ack = None
    return consumer


def _acked(consumer: Any, *offsets: int) -> None:
    consumer._acked[REQUESTS] = list(offsets)
    consumer._acked_index[REQUESTS] = set(offsets)


def test_faust_commits_a_skipped_record_the_patch_does_not(
    stock: Any,
) -> None:
    stock._committed_offset[REQUESTS] = 100
    stock.app.flow_control.suspend()  # the stream skips record 100 and acks it
    stale = guarded(100)
    stale.incref()
    assert faust_aiokafka.Consumer.ack(stock, stale) is True  # Faust: counted as done
    assert faust_aiokafka.Consumer._new_offset(stock, REQUESTS) == 101  # 100 is lost
    stock._acked_index[REQUESTS].clear()
    again = guarded(100)
    again.incref()
    assert again.ack(stock) is False  # the patch: refused
    assert faust_aiokafka.Consumer._new_offset(stock, REQUESTS) is None


async def test_faust_commits_over_dropped_records_the_patch_does_not(
    stock: Any,
) -> None:
    # 100-129 were fetched, then dropped (its fetch loop broke on a generation change
    # with the position past them); 130 is read next, so its drain loop adds a gap.
    stock._committed_offset[REQUESTS] = 100
    await faust_aiokafka.Consumer._add_gap(stock, REQUESTS, 100, 130)
    _acked(stock, 130, 131)
    assert faust_aiokafka.Consumer._new_offset(stock, REQUESTS) == 131  # 100-129 lost
    stock._gap.clear()
    await stock._add_gap(REQUESTS, 100, 130)  # the patch: no gap on this topic
    _acked(stock, 130, 131)
    assert faust_aiokafka.Consumer._new_offset(stock, REQUESTS) is None


def test_faust_commits_over_the_head_record_the_patch_does_not(stock: Any) -> None:
    stock._committed_offset[REQUESTS] = 100  # the next offset to read
    _acked(stock, 101, 102)  # 100 never processed
    assert faust_aiokafka.Consumer._new_offset(stock, REQUESTS) == 103  # 100 is lost
    _acked(stock, 101, 102)
    assert stock._new_offset(REQUESTS) is None


def test_group_membership_counts_only_an_accepted_join() -> None:
    from phoenix_stream.streaming.transport import GroupMembership

    assert not GroupMembership("g", "", -1).joined  # never joined
    assert not GroupMembership("g", "m-1", -1).joined  # member id only: join not accepted
    assert GroupMembership("g", "m-1", 0).joined  # generations start at 0 on some brokers
    refused = GroupMembership("g", "", -1, "InconsistentGroupProtocolError: ...")
    assert not refused.joined and refused.refused


class _SeekRecorder(QueueServiceThread):
    """A real mode service thread, as Faust's consumer thread is; records where seeks run."""

    def __init__(self) -> None:
        super().__init__()
        self.seeks: list[tuple[TP, int, int]] = []

    def seek(self, partition: TP, offset: int) -> None:
        self.seeks.append((partition, offset, threading.get_ident()))


async def test_seek_runs_in_the_consumer_thread() -> None:
    """aiokafka lives in the consumer thread: a seek from the main loop must go there.

    Faust's own ``_seek`` calls the thread's ``seek`` in the caller's thread, which raced
    aiokafka's fetcher (KeyError in ``fetched_records``) and woke its futures from the
    wrong thread; this fails without patch (6).
    """
    thread = _SeekRecorder()
    await thread.start()
    try:
        consumer = _ShortFetchConsumer.__new__(_ShortFetchConsumer)
        consumer._thread = thread
        await asyncio.wait_for(consumer._seek(REQUESTS, 42), timeout=30)
        assert thread.seeks and thread.seeks[0][:2] == (REQUESTS, 42)
        seeker = thread.seeks[0][2]
        assert seeker != threading.get_ident()
        assert seeker == thread._thread.ident
    finally:
        await thread.stop()


class _QueuedEvent:
    """What Faust queues for a stream: an event holding its consumed message."""

    def __init__(self, message: _GuardedMessage) -> None:
        self.message = message


def _queued_offsets(flow: FlowControlEvent, *events: tuple[int, int]) -> list[int]:
    """Queue events (offset, generation) while flow is suspended, resume, and return the
    offsets still queued: a stream queue as Faust builds it (``clear_on_resume``)."""
    queue: ThrowableQueue = ThrowableQueue(flow_control=flow, clear_on_resume=True)
    for offset, generation in events:
        queue.put_nowait(_QueuedEvent(guarded(offset, generation)))
    flow.resume()
    return [queue.get_nowait().message.offset for _ in range(queue.qsize())]


def test_a_resume_keeps_the_current_generation_faust_drops_it() -> None:
    """Faust's recovery resumes flow after it sought the stream partitions and the
    fetcher delivered records of the new generation: Faust's resume drops them (their
    offsets already read, a hole); patch (9) keeps them and drops only older ones."""
    queued = [(98, 6), (98, 7), (99, 7), (100, 7)]
    assert _queued_offsets(FlowControlEvent(), *queued) == []  # Faust: 98-100 lost
    patched = GenerationFlowControl(lambda: 7)
    assert _queued_offsets(patched, *queued) == [98, 99, 100]
    assert patched.is_active()


def test_a_revoke_still_empties_every_queue() -> None:
    flow = GenerationFlowControl(lambda: 7, initially_suspended=False)
    queue: ThrowableQueue = ThrowableQueue(flow_control=flow, clear_on_resume=True)
    queue.put_nowait(_QueuedEvent(guarded(5, 7)))
    queue.put_nowait("not an event")
    flow.suspend()
    flow.clear()  # what Faust's revoke does, after suspending
    assert queue.qsize() == 0 and not flow.is_active()


def test_a_resume_keeps_what_is_not_a_consumed_event() -> None:
    flow = GenerationFlowControl(lambda: 7)
    queue: ThrowableQueue = ThrowableQueue(flow_control=flow, clear_on_resume=True)
    queue.put_nowait("a value sent to an in-memory channel")
    flow.resume()
    assert queue.get_nowait() == "a value sent to an in-memory channel"
