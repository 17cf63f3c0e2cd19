"""Cancel again the agent tasks that outlive their stop.

Faust stops an agent by cancelling its actors' tasks once, then waits for them without a
bound. A task that loses that one cancellation runs on, and the stop waits for it until
the stop deadline ends the process (exit 1, ``stop_deadline.py``). Cancellations are lost
in libraries, not in our code: on Python 3.11 ``asyncio.wait_for`` returns the result of
an inner future that completed as the cancel arrived (CPython gh-86296, fixed in 3.12),
and ``wait_for`` is used inside the Kafka, Redis and PostgreSQL clients. One such hang
was seen in CI with the inference agent (SIGTERM, 20 s without an exit).

While the worker stops, :func:`cancel_lingering_actors` looks every ``every_s`` seconds
for actor tasks of stopping agents that were already running at its previous look, and
cancels them again. It never touches an agent that is not stopping: Faust reads a
cancelled actor of a running agent as a rebalance and restarts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["cancel_lingering_actors"]

log = logging.getLogger(__name__)


def _running_actor_tasks(agents: Iterable[Any]) -> set[asyncio.Task[Any]]:
    tasks: set[asyncio.Task[Any]] = set()
    for agent in agents:
        if not agent.should_stop:
            continue
        for actor in list(getattr(agent, "_actors", ())):
            task = actor.actor_task
            if task is not None and not task.done():
                tasks.add(task)
    return tasks


async def cancel_lingering_actors(
    agents: Callable[[], Iterable[Any]], *, every_s: float = 2.0
) -> None:
    """Until cancelled: cancel again each actor task of a stopping agent seen twice running.

    ``agents`` returns Faust's agents (read at each look: the stop changes them).
    """
    seen: set[asyncio.Task[Any]] = set()
    while True:
        await asyncio.sleep(every_s)
        running = _running_actor_tasks(agents())
        for task in running & seen:
            log.warning(
                "agent task %s is still running %.0f s into the stop: cancelling it again",
                task.get_name(),
                every_s,
            )
            task.cancel()
        seen = running
