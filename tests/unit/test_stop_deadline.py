"""The stop deadline ends a process whose stop outlives it, and only then."""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import suppress

import pytest

from phoenix_stream.stop_deadline import EXIT_CODE, StopDeadline, waiting_tasks


def test_a_stop_that_outlives_the_deadline_ends_the_process() -> None:
    ended: list[int] = []
    done = threading.Event()

    def end(code: int) -> None:
        ended.append(code)
        done.set()

    deadline = StopDeadline(0.05, end=end)
    deadline.arm()
    deadline.arm()  # a second stop keeps the first deadline
    assert done.wait(30), "the deadline never expired"
    assert ended == [EXIT_CODE]


def test_a_disarmed_deadline_does_nothing() -> None:
    ended: list[int] = []
    deadline = StopDeadline(0.2, end=ended.append)
    deadline.arm()
    deadline.disarm()
    assert deadline._timer is not None
    deadline._timer.join(30)
    assert ended == []


def test_an_expired_deadline_first_says_what_the_stop_waited_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ended = threading.Event()
    deadline = StopDeadline(0.05, end=lambda code: ended.set(), describe=lambda: "task-x waits")
    with caplog.at_level(logging.ERROR, logger="phoenix_stream.stop_deadline"):
        deadline.arm()
        assert ended.wait(30), "the deadline never expired"
    assert "task-x waits" in caplog.text


async def test_waiting_tasks_names_each_task_and_where_it_waits() -> None:
    loop = asyncio.get_running_loop()
    gate = asyncio.Event()

    async def parked_on_the_gate() -> None:
        await gate.wait()

    task = asyncio.create_task(parked_on_the_gate(), name="parked")
    await asyncio.sleep(0)
    try:
        # From another thread, as the deadline's timer asks: the loop answers.
        report = await asyncio.to_thread(waiting_tasks, loop)
    finally:
        gate.set()
        await task
    assert "--- parked:" in report
    assert "in parked_on_the_gate" in report and "await gate.wait()" in report


def test_waiting_tasks_reads_a_loop_that_does_not_answer() -> None:
    loop = asyncio.new_event_loop()
    try:

        async def never() -> None:
            await asyncio.Event().wait()

        task = loop.create_task(never(), name="stuck")
        loop.run_until_complete(asyncio.sleep(0))  # the task now waits; the loop stops
        report = waiting_tasks(loop, within_s=0.1)
        task.cancel()
        with suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
    finally:
        loop.close()
    assert "--- stuck:" in report and "in never" in report
