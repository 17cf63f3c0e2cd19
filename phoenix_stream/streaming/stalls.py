"""Stall detection: an agent that stops consuming while records wait says so in seconds.

Faust's own check ("Stream stopped processing, or is slow") fires only after
``stream_processing_timeout`` (300 s here, more with a long retrain wait), and only for
partitions whose fetch position fell behind the high-water mark. Worse, one stuck agent
stops every agent of its worker: when its channel's queue is full, Faust's consumer waits
to put the next event there and delivers nothing to anybody (faust 0.15.3,
``transport/conductor.py``). This module watches every agent from inside its own loop:

- **busy**: the agent holds a batch (``AgentWatch.holding``) and makes no progress for its
  patience: no retry by the failure policy and its task suspended at the same await on
  the same future at every look. A retry loop (new sleep each time) or work going on
  (the task suspended somewhere else at each look) is progress; a delivery future or a
  lock that never resolves is not;
- **idle**: the agent holds nothing, events wait in its channel's queue, and it has taken
  none for its patience.

``StallWatch.check`` (once a second, ``Runtime``) keeps ``current`` (read by ``/ready``),
the ``phoenix_agent_stalled`` gauge and ``phoenix_stream_stalls_total`` counter, and logs
one line when a stall starts (with where the agent waits, as an await chain) and one when
it ends. What to do about a long one is the runtime's decision (it exits the worker).

The await chain reads CPython's coroutine attributes (``cr_await``, ``cr_frame``) and
asyncio's ``Task._fut_waiter`` (the future a task is suspended on; CPython 3.11 and 3.12,
in both the C and the Python task): no Faust internals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from phoenix_stream import metrics
from phoenix_stream.messages.records import InRecord

log = logging.getLogger(__name__)

# Exit status of a worker that stopped itself because an agent stalled (EX_SOFTWARE).
EXIT_STALLED = 70

# Await chains longer than this are cut (a chain is a few dozen frames at most).
_MAX_CHAIN = 64

Clock = Callable[[], float]


@dataclass(frozen=True)
class Stall:
    """An agent that stopped: since when (the clock's time), why, and where it waits."""

    agent: str
    since: float
    reason: str
    where: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: the reason, then the innermost frames of the await chain."""
        if not self.where:
            return self.reason
        return f"{self.reason}; waiting at {' <- '.join(reversed(self.where[-4:]))}"


def describe_records(records: Sequence[InRecord]) -> str:
    """``topic[partition]@first-last`` for each topic-partition of ``records``."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for record in records:
        key = (record.topic, record.partition)
        low, high = spans.get(key, (record.offset, record.offset))
        spans[key] = (min(low, record.offset), max(high, record.offset))
    parts = [
        f"{topic}[{partition}]@{low}" + (f"-{high}" if high != low else "")
        for (topic, partition), (low, high) in sorted(spans.items())
    ]
    return ", ".join(parts) or "no records"


def await_chain(task: asyncio.Task[Any] | None) -> tuple[str, ...]:
    """Where ``task`` is suspended: ``file:line function`` from the outermost coroutine in,
    then the future it waits on (followed into it when that is a task)."""
    chain: list[str] = []
    seen: set[int] = set()
    while task is not None and id(task) not in seen and len(chain) < _MAX_CHAIN:
        seen.add(id(task))
        awaitable: Any = task.get_coro()
        while awaitable is not None and len(chain) < _MAX_CHAIN:
            frame = (
                getattr(awaitable, "cr_frame", None)
                or getattr(awaitable, "ag_frame", None)
                or getattr(awaitable, "gi_frame", None)
            )
            if frame is not None:
                code = frame.f_code
                chain.append(f"{_short_path(code.co_filename)}:{frame.f_lineno} {code.co_name}")
            awaitable = (
                getattr(awaitable, "cr_await", None)
                or getattr(awaitable, "ag_await", None)
                or getattr(awaitable, "gi_yieldfrom", None)
            )
        waiter = _waiter(task)
        if waiter is None:
            break
        chain.append(f"awaiting {_describe_future(waiter)}")
        task = waiter if isinstance(waiter, asyncio.Task) else None
    return tuple(chain)


def _waiter(task: asyncio.Task[Any]) -> asyncio.Future[Any] | None:
    waiter = getattr(task, "_fut_waiter", None)
    return waiter if isinstance(waiter, asyncio.Future) else None


def _describe_future(future: asyncio.Future[Any]) -> str:
    children = getattr(future, "_children", None)  # asyncio.gather's future
    if isinstance(children, list):
        pending = sum(1 for child in children if not child.done())
        return f"{type(future).__name__} of {len(children)} futures, {pending} pending"
    if isinstance(future, asyncio.Task):
        return f"task {future.get_name()}"
    return type(future).__name__


def _await_point(task: asyncio.Task[Any] | None) -> tuple[object, ...]:
    """What identifies one suspension: the chain and the very future waited on (the
    object itself, not its id: a retry loop's next sleep may reuse a freed one's id)."""
    if task is None:
        return ()
    return (await_chain(task), _waiter(task))


def _subject(name: str) -> str:
    return name if name == ConsumerWatch.name else f"agent {name}"


def _same_point(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    if len(a) != len(b):
        return False
    return not a or (a[0] == b[0] and a[1] is b[1])


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "phoenix_stream/", "/agents/", "/tables/", "/web/"):
        index = path.rfind(marker)
        if index >= 0:
            return path[index + len(marker) :] if marker == "site-packages/" else path[index:]
    return path


class AgentWatch:
    """One agent's progress, kept by its loop and its failure policy.

    A watch that no ``StallWatch`` created is never checked (a policy built on its own).
    """

    def __init__(self, agent: str, patience_s: float = 20.0, clock: Clock = time.monotonic):
        self.agent = agent
        self.patience_s = patience_s
        self._clock = clock
        self._task: asyncio.Task[Any] | None = None
        self._waiting: Callable[[], int] = lambda: 0
        self._held: Sequence[InRecord] = ()
        self._busy_since: float | None = None
        self._last_progress = clock()
        self._waiting_since: float | None = None
        self._point: tuple[object, ...] = ()

    def attach(self, stream: Any, task: asyncio.Task[Any] | None = None) -> None:
        """Watch the running task (the agent's) and the queue of ``stream``'s channel."""
        self._task = task if task is not None else asyncio.current_task()
        queue = getattr(getattr(stream, "channel", None), "queue", None)
        qsize = getattr(queue, "qsize", None)
        self._waiting = qsize if callable(qsize) else (lambda: 0)
        self.progress()

    def observe(self, waiting: Callable[[], int], task: asyncio.Task[Any] | None) -> None:
        """Watch ``task``, with ``waiting`` counting the events it has not taken yet."""
        self._task = task
        self._waiting = waiting
        self.progress()

    @contextmanager
    def holding(self, records: Sequence[InRecord]) -> Iterator[None]:
        """The agent handles ``records`` inside this block."""
        self._held = records
        self._busy_since = self._clock()
        self._point = ()
        self.progress()
        try:
            yield
        finally:
            self._held = ()
            self._busy_since = None
            self.progress()

    def progress(self) -> None:
        """Something moved: a batch began or ended, or a retry."""
        self._last_progress = self._clock()
        self._waiting_since = None

    def check(self, now: float | None = None) -> Stall | None:
        """The stall this agent is in now, or None."""
        now = self._clock() if now is None else now
        if self._busy_since is not None:
            point = _await_point(self._task)
            if not _same_point(point, self._point):
                self._point = point
                self._last_progress = max(self._last_progress, now)
            if now - self._last_progress < self.patience_s:
                return None
            held = self._held
            reason = (
                f"holds {len(held)} records ({describe_records(held)}) for "
                f"{now - self._busy_since:.0f} s, {now - self._last_progress:.0f} s "
                "without progress"
            )
            return Stall(self.agent, self._last_progress, reason, await_chain(self._task))
        self._point = ()
        try:
            waiting = int(self._waiting())
        except Exception:  # a queue that cannot say is not evidence of a stall
            waiting = 0
        if waiting <= 0:
            self._waiting_since = None
            return None
        if self._waiting_since is None:
            self._waiting_since = now
        since = max(self._waiting_since, self._last_progress)
        if now - since < self.patience_s:
            return None
        reason = f"{waiting} events wait in its queue and it took none for {now - since:.0f} s"
        return Stall(self.agent, since, reason, await_chain(self._task))


# Progress of one topic-partition: (last offset delivered to the agents, broker high-water).
Progress = tuple[int | None, int | None]


class ConsumerWatch:
    """The consumer's delivery to the agents: records wait at the broker, none come.

    When no agent holds anything and no queue has events, a stall is upstream of them:
    Faust's fetch loop delivers nothing (a partition paused and never resumed, a fetch
    that never returns, the loop stuck on a full queue). Seen per topic-partition: the
    broker's high-water mark is past the last offset delivered, and that offset has not
    moved for the patience, while flow is active (a rebalance or recovery suspends it).
    """

    name = "consumer"

    def __init__(self, patience_s: float, clock: Clock = time.monotonic) -> None:
        self.patience_s = patience_s
        self._clock = clock
        self._read: Callable[[], dict[str, Progress]] = dict
        self._active: Callable[[], bool] = lambda: False
        self._seen: dict[str, tuple[int | None, float]] = {}

    def observe(self, read: Callable[[], dict[str, Progress]], active: Callable[[], bool]) -> None:
        """Watch ``read()`` (per topic-partition label) while ``active()`` holds."""
        self._read = read
        self._active = active
        self._seen.clear()

    def check(self, now: float | None = None) -> Stall | None:
        """The consumer's stall now, or None."""
        now = self._clock() if now is None else now
        try:
            active = self._active()
            progress = self._read() if active else {}
        except Exception:  # state that cannot be read is not evidence of a stall
            active, progress = False, {}
        if not active:
            self._seen.clear()  # a rebalance: every partition starts afresh after it
            return None
        stalled: list[str] = []
        since = now
        for tp, (delivered, highwater) in sorted(progress.items()):
            seen = self._seen.get(tp)
            if seen is None or seen[0] != delivered:
                self._seen[tp] = (delivered, now)
                continue
            base = -1 if delivered is None else delivered
            if highwater is None or highwater <= base + 1:
                self._seen[tp] = (delivered, now)  # nothing waits: not stalled, fresh
                continue
            if now - seen[1] >= self.patience_s:
                stalled.append(f"{tp} (delivered up to {delivered}, broker has {highwater})")
                since = min(since, seen[1])
        for tp in set(self._seen) - set(progress):
            del self._seen[tp]
        if not stalled:
            return None
        reason = (
            f"records wait on {len(stalled)} partitions and none reached an agent for "
            f"{now - since:.0f} s: {', '.join(stalled[:8])}{', ...' if len(stalled) > 8 else ''}"
        )
        return Stall(self.name, since, reason)


class StallWatch:
    """Every agent's watch and the consumer's; ``check`` says which stall now, and
    reports changes."""

    def __init__(self, timeout_s: float, clock: Clock = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._agents: dict[str, AgentWatch] = {}
        self.consumer = ConsumerWatch(timeout_s, clock)
        self.current: dict[str, Stall] = {}

    def agent(self, name: str, patience_s: float | None = None) -> AgentWatch:
        """The watch of agent ``name`` (made on first use; ``patience_s`` default the timeout)."""
        watch = self._agents.get(name)
        if watch is None:
            patience = self.timeout_s if patience_s is None else max(patience_s, self.timeout_s)
            watch = self._agents[name] = AgentWatch(name, patience, self._clock)
        return watch

    def check(self) -> list[Stall]:
        """Look at every agent; the stalls that began at this look (logged and counted)."""
        now = self._clock()
        found: dict[str, Stall] = {}
        for name, watch in self._agents.items():
            stall = watch.check(now)
            if stall is not None:
                found[name] = stall
        if not found:  # a stuck agent stops the consumer too: name the agent, not both
            stall = self.consumer.check(now)
            if stall is not None:
                found[stall.agent] = stall
        else:
            self.consumer.check(now)
        began = [stall for name, stall in found.items() if name not in self.current]
        for stall in began:
            metrics.STALLS.labels(agent=stall.agent).inc()
            log.error("%s stalled: %s", _subject(stall.agent), stall.describe())
            if stall.where:
                log.error("agent %s await chain:\n  %s", stall.agent, "\n  ".join(stall.where))
        for name, stall in self.current.items():
            if name not in found:
                log.warning(
                    "%s moves again after %.0f s stalled", _subject(name), now - stall.since
                )
        for name in [*self._agents, self.consumer.name]:
            metrics.AGENT_STALLED.labels(agent=name).set(1 if name in found else 0)
            metrics.STALLS.labels(agent=name)  # exists before the first stall (rate() sees it)
        self.current = found
        return began

    def lasting(self, seconds: float) -> list[Stall]:
        """The current stalls that began at least ``seconds`` ago."""
        now = self._clock()
        return [stall for stall in self.current.values() if now - stall.since >= seconds]

    def tasks_waiting_in(self, *markers: str) -> dict[str, tuple[str, ...]]:
        """The await chains of the loop's tasks that pass through a frame naming one of
        ``markers`` (e.g. Faust's fetch loop), by task name."""
        found: dict[str, tuple[str, ...]] = {}
        for task in asyncio.all_tasks():
            chain = await_chain(task)
            if any(marker in line for line in chain for marker in markers):
                found[task.get_name()] = chain
        return found

    def chains(self) -> dict[str, tuple[str, ...]]:
        """Where every watched agent waits now (for a log line)."""
        return {name: await_chain(watch._task) for name, watch in self._agents.items()}
