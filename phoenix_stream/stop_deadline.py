"""A stopping worker exits within ``PHOENIX_STOP_TIMEOUT_S``, however its stop goes.

Faust stops its services one after the other and waits for each; one that never returns
(an agent restarted by its supervisor mid-stop, a dependency that hangs) held a worker
for minutes until SIGKILL. ``StopDeadline`` is armed when the app starts stopping and,
if the process is still there when it expires, logs what it does and ends the process
from a thread of its own (the event loop may be the thing that hangs).

Nothing acknowledged is lost by that: HTTP callers were answered after the broker had
their records (acks=all), and offsets are committed only for handled events, so what
the worker had not finished is read again by the next owner of its partitions.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import threading
from collections.abc import Callable

__all__ = ["EXIT_CODE", "StopDeadline", "waiting_tasks"]

log = logging.getLogger(__name__)

EXIT_CODE = 1  # the stop did not finish in time


class StopDeadline:
    """Ends the process ``timeout_s`` seconds after :meth:`arm`, unless it ended before."""

    def __init__(
        self,
        timeout_s: float,
        *,
        end: Callable[[int], object] = os._exit,
        describe: Callable[[], str] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._end = end
        self._describe = describe
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        """Start counting (once; later calls keep the first deadline)."""
        if self._timer is not None:
            return
        self._timer = threading.Timer(self.timeout_s, self._expire)
        self._timer.daemon = True  # never keeps a process alive that ended by itself
        self._timer.name = "phoenix-stop-deadline"
        self._timer.start()

    def disarm(self) -> None:
        """Stop counting (a stop that finished, or a test)."""
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        log.error(
            "the worker did not stop within %.0f s (PHOENIX_STOP_TIMEOUT_S); ending it now: "
            "records not yet handled stay uncommitted and are read again",
            self.timeout_s,
        )
        if self._describe is not None:
            try:
                log.error("what the stop was still waiting for:\n%s", self._describe())
            except Exception:  # the report must never keep the process from ending
                log.exception("could not describe the tasks still running")
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._end(EXIT_CODE)


def waiting_tasks(loop: asyncio.AbstractEventLoop, *, within_s: float = 1.0) -> str:
    """Each unfinished task of ``loop`` with the stack it waits in, from any thread.

    Asked of the loop itself first (consistent); if the loop does not answer within
    ``within_s`` (it may be what hangs), read from this thread, which is good enough for
    coroutines suspended at an ``await``.
    """
    if loop.is_running():
        answer = asyncio.run_coroutine_threadsafe(_describe_tasks(loop), loop)
        try:
            return answer.result(within_s)
        except Exception:
            answer.cancel()
    return _tasks_report(loop)


async def _describe_tasks(loop: asyncio.AbstractEventLoop) -> str:
    return _tasks_report(loop)


def _tasks_report(loop: asyncio.AbstractEventLoop) -> str:
    out = io.StringIO()
    for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=out)
        task.print_stack(limit=30, file=out)
    return out.getvalue()
