"""An agent task that lost its stop's cancellation is cancelled again; others are left."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from phoenix_stream.streaming.lingering_actors import cancel_lingering_actors


@dataclass(eq=False)  # hashable by identity, as Faust's actors are
class Actor:
    actor_task: asyncio.Task[Any] | None


@dataclass
class Agent:
    should_stop: bool
    _actors: set[Any] = field(default_factory=set)


async def swallows_the_first_cancel(cancels: list[int]) -> None:
    """As a library's lost cancel does: the first one is absorbed, the task goes on."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancels.append(1)
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
    await asyncio.Event().wait()  # waits for more input that never comes


async def test_a_task_that_swallowed_its_cancel_is_cancelled_again() -> None:
    cancels: list[int] = []
    task = asyncio.create_task(swallows_the_first_cancel(cancels))
    stopping = Agent(should_stop=True, _actors={Actor(task)})
    await asyncio.sleep(0)
    task.cancel()  # Faust's one cancel
    escort = asyncio.create_task(cancel_lingering_actors(lambda: [stopping], every_s=0.01))
    try:
        async with asyncio.timeout(30):
            with suppress(asyncio.CancelledError):
                await task
    finally:
        escort.cancel()
    assert task.cancelled() and cancels == [1]


async def test_the_tasks_of_a_running_agent_are_left_alone() -> None:
    running_task = asyncio.create_task(asyncio.Event().wait())
    running = Agent(should_stop=False, _actors={Actor(running_task), Actor(None)})
    looks = 0
    looked_enough = asyncio.Event()

    def agents() -> list[Agent]:
        nonlocal looks
        looks += 1
        if looks >= 20:  # many looks, each of which could have cancelled it
            looked_enough.set()
        return [running]

    escort = asyncio.create_task(cancel_lingering_actors(agents, every_s=0.001))
    try:
        async with asyncio.timeout(30):
            await looked_enough.wait()
    finally:
        escort.cancel()
    assert not running_task.done()
    running_task.cancel()
