"""Stall detection: a held batch without progress, or waiting events nobody takes.

The clock is a stand-in; the agents are real asyncio tasks suspended on real futures, so
the await chains and await points are the ones a worker sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from phoenix_stream import metrics
from phoenix_stream.messages.records import InRecord
from phoenix_stream.streaming.stalls import (
    AgentWatch,
    StallWatch,
    await_chain,
    describe_records,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def records(topic: str, partition: int, offsets: range) -> list[InRecord]:
    return [InRecord(topic, partition, o, None, b"x") for o in offsets]


def stalled_value(agent: str) -> float | None:
    return metrics.REGISTRY.get_sample_value("phoenix_agent_stalled", {"agent": agent})


def stalls_total(agent: str) -> float:
    return metrics.REGISTRY.get_sample_value("phoenix_stream_stalls_total", {"agent": agent}) or 0.0


@pytest.fixture
async def stuck() -> AsyncIterator[tuple[asyncio.Task[None], asyncio.Future[None]]]:
    """A task suspended on a future that nobody resolves (until the test does)."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def deliver() -> None:
        await asyncio.gather(future)

    async def agent_loop() -> None:
        await deliver()

    task = asyncio.create_task(agent_loop())
    await asyncio.sleep(0)
    try:
        yield task, future
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_records_are_named_by_topic_partition_and_offsets() -> None:
    held = records("t.requests", 2, range(5, 9)) + records("t.requests", 0, range(7, 8))
    assert describe_records(held) == "t.requests[0]@7, t.requests[2]@5-8"
    assert describe_records([]) == "no records"


async def test_await_chain_reaches_the_future_the_agent_waits_on(stuck: tuple) -> None:
    task, _ = stuck
    chain = await_chain(task)
    names = [line.split(" ")[-1] for line in chain[:-1]]
    assert names[:2] == ["agent_loop", "deliver"]
    assert chain[-1] == "awaiting _GatheringFuture of 1 futures, 1 pending"


async def test_a_batch_held_on_one_unresolved_future_is_a_stall_after_patience(
    stuck: tuple,
) -> None:
    task, future = stuck
    clock = Clock()
    watch = StallWatch(timeout_s=20.0, clock=clock)
    agent = watch.agent("unit-busy")
    agent.observe(lambda: 0, task)
    with agent.holding(records("t.requests", 3, range(100, 600))):
        assert watch.check() == []
        clock.now += 19.0
        assert watch.check() == []
        assert stalled_value("unit-busy") == 0
        before = stalls_total("unit-busy")
        clock.now += 2.0
        began = watch.check()
        assert [s.agent for s in began] == ["unit-busy"]
        stall = watch.current["unit-busy"]
        assert "holds 500 records (t.requests[3]@100-599)" in stall.reason
        assert "deliver" in stall.describe()
        assert stalled_value("unit-busy") == 1
        assert stalls_total("unit-busy") == before + 1
        clock.now += 5.0
        assert watch.check() == []  # the same stall: counted once
        assert stalls_total("unit-busy") == before + 1
        assert [s.agent for s in watch.lasting(5.0)] == ["unit-busy"]
        assert watch.lasting(60.0) == []
        future.set_result(None)
        await asyncio.sleep(0)
    assert watch.check() == []
    assert watch.current == {}
    assert stalled_value("unit-busy") == 0


async def test_a_batch_that_moves_or_retries_is_not_stalled() -> None:
    clock = Clock()
    watch = StallWatch(timeout_s=20.0, clock=clock)
    agent = watch.agent("unit-moving")

    async def retrying() -> None:
        for _ in range(100_000):  # a backoff loop: a new sleep (a new future) each time
            await asyncio.sleep(0.001)

    task = asyncio.create_task(retrying())
    try:
        agent.observe(lambda: 0, task)
        with agent.holding(records("t.predictions", 0, range(3))):
            for _ in range(10):
                await asyncio.sleep(0.003)
                clock.now += 10.0
                assert watch.check() == [], watch.current
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # A policy retry counts as progress even where the agent waits at the same place.
    stuck_agent = AgentWatch("unit-retry", patience_s=20.0, clock=clock)
    with stuck_agent.holding(records("t.feedback", 1, range(1))):
        for _ in range(5):
            clock.now += 15.0
            stuck_agent.progress()
            assert stuck_agent.check() is None
        clock.now += 21.0
        assert stuck_agent.check() is not None


async def test_waiting_events_untaken_are_a_stall_but_a_quiet_agent_is_not(stuck: tuple) -> None:
    task, _ = stuck
    clock = Clock()
    watch = StallWatch(timeout_s=20.0, clock=clock)
    agent = watch.agent("unit-idle")
    waiting = [0]
    agent.observe(lambda: waiting[0], task)
    clock.now += 3600.0  # quiet for an hour: no events, no stall
    assert watch.check() == []
    waiting[0] = 40
    assert watch.check() == []  # events just came: the agent gets its patience from now
    clock.now += 19.0
    assert watch.check() == []
    clock.now += 2.0
    began = watch.check()
    assert [s.agent for s in began] == ["unit-idle"]
    assert "40 events wait in its queue" in began[0].reason
    with agent.holding(records("t.requests", 0, range(40))):  # it took them: no stall
        assert watch.check() == []
    waiting[0] = 0
    clock.now += 60.0
    assert watch.check() == []


def test_patience_is_at_least_the_timeout_and_watches_are_per_agent() -> None:
    watch = StallWatch(timeout_s=20.0)
    assert watch.agent("a").patience_s == 20.0
    assert watch.agent("a") is watch.agent("a")
    assert watch.agent("slow", patience_s=900.0).patience_s == 900.0
    assert watch.agent("short", patience_s=1.0).patience_s == 20.0


async def test_a_policy_without_a_stall_watch_still_has_one_that_nobody_checks() -> None:
    from phoenix_stream.messages.dead_letters import DeadLetters
    from phoenix_stream.streaming.failure_policy import FailurePolicy

    policy = FailurePolicy(
        "x",
        None,  # type: ignore[arg-type]
        DeadLetters("dead", 1024),
        is_stopping=lambda: False,
        store_outage=lambda cause: False,
    )
    assert policy.watch.agent == "x"
    assert policy.watch.check() is None


def test_consumer_stalls_when_records_wait_and_none_are_delivered() -> None:
    clock = Clock()
    watch = StallWatch(timeout_s=20.0, clock=clock)
    progress: dict[str, tuple[int | None, int | None]] = {
        "t.requests[0]": (99, 100),  # all delivered: the high-water mark is the next offset
        "t.requests[1]": (None, None),  # nothing fetched yet
    }
    flowing = [True]
    watch.consumer.observe(lambda: dict(progress), lambda: flowing[0])
    assert watch.check() == []
    clock.now += 3600.0  # quiet: nothing waits, no stall
    assert watch.check() == []
    progress["t.requests[0]"] = (99, 180)  # records arrive and are not delivered
    assert watch.check() == []
    clock.now += 19.0
    assert watch.check() == []
    clock.now += 2.0
    began = watch.check()
    assert [s.agent for s in began] == ["consumer"]
    assert "t.requests[0] (delivered up to 99, broker has 180)" in began[0].reason
    assert stalled_value("consumer") == 1
    progress["t.requests[0]"] = (120, 180)  # deliveries again
    assert watch.check() == []
    assert stalled_value("consumer") == 0


def test_a_rebalance_or_recovery_restarts_the_consumer_clock() -> None:
    clock = Clock()
    watch = StallWatch(timeout_s=20.0, clock=clock)
    progress = {"t.feedback[2]": (5, 50)}
    flowing = [True]
    watch.consumer.observe(lambda: dict(progress), lambda: flowing[0])
    assert watch.check() == []
    clock.now += 15.0
    flowing[0] = False  # flow suspended: deliveries wait rightly
    assert watch.check() == []
    clock.now += 60.0
    assert watch.check() == []
    flowing[0] = True
    assert watch.check() == []
    clock.now += 15.0
    assert watch.check() == []
    clock.now += 6.0
    assert [s.agent for s in watch.check()] == ["consumer"]


async def test_a_stuck_agent_is_named_rather_than_the_consumer_it_stops(stuck: tuple) -> None:
    task, _ = stuck
    clock = Clock()
    watch = StallWatch(timeout_s=20.0, clock=clock)
    watch.consumer.observe(lambda: {"t.requests[0]": (10, 900)}, lambda: True)
    agent = watch.agent("unit-culprit")
    agent.observe(lambda: 4096, task)
    with agent.holding(records("t.drift-counts", 0, range(1))):
        watch.check()
        clock.now += 25.0
        watch.check()
        assert sorted(watch.current) == ["unit-culprit"]
