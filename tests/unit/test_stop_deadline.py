"""The stop deadline ends a process whose stop outlives it, and only then."""

from __future__ import annotations

import threading

from phoenix_stream.stop_deadline import EXIT_CODE, StopDeadline


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
