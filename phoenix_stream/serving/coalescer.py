"""Coalescing concurrent HTTP predictions into shared predictor calls.

Each HTTP request alone would pay for a Redis round trip, an ONNX call and a Kafka
produce of its own. Requests that arrive while a batch is being scored wait for the next
batch instead: one MGET, one ONNX call per version and one produce for all of them. No
timer is involved, so a lone request is scored at once; batches grow only with load.

Everything is bounded: at most ``max_waiting`` requests wait (beyond, ``Overloaded`` at
once), each caller is answered within ``deadline_s`` (else ``DeliveryTimeout``), and
``close()`` answers every caller still waiting or in flight (``ShuttingDown``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from phoenix_stream.exceptions import DeliveryTimeout, Overloaded, ShuttingDown
from phoenix_stream.messages.requests import ParsedRequest
from phoenix_stream.serving.predictor import Outcome

log = logging.getLogger(__name__)

Score = Callable[[list[ParsedRequest], float], Awaitable[Outcome]]

# How long close() lets the running batch finish before answering its callers, seconds.
SHUTDOWN_GRACE_S = 2.0


@dataclass(eq=False)
class _Call:
    """One caller's requests and the future its answer is set on."""

    requests: Sequence[ParsedRequest]
    future: asyncio.Future[Outcome]


class Coalescer:
    """Run ``score`` over everything submitted while the previous batch was running.

    ``max_batch`` and ``max_waiting`` count requests; ``deadline_s`` and ``grace_s`` are
    seconds.
    """

    def __init__(
        self,
        score: Score,
        *,
        max_batch: int = 1000,
        max_waiting: int = 5000,
        deadline_s: float = 5.0,
        grace_s: float = SHUTDOWN_GRACE_S,
    ) -> None:
        self._score = score
        self._max_batch = max_batch
        self._max_waiting = max_waiting
        self._deadline_s = deadline_s
        self._grace_s = grace_s
        self._waiting: deque[_Call] = deque()
        self._waiting_requests = 0
        self._batch: list[_Call] = []
        self._drainer: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def waiting(self) -> int:
        """Requests queued for a later batch (callers that gave up count until dropped)."""
        return self._waiting_requests

    async def submit(self, requests: Sequence[ParsedRequest]) -> Outcome:
        """The outcome for ``requests``, computed together with concurrent callers'.

        Raises ``Overloaded`` at once when the queue is full (a submit into an empty queue
        is always taken, so an oversize one cannot be refused forever), ``ShuttingDown``
        once ``close()`` began, and ``DeliveryTimeout`` after ``deadline_s``. A timeout or
        a cancelled caller never cancels the shared batch: requests still waiting are then
        not scored, but those already in the running batch may still be scored and
        recorded on Kafka, their answer dropped.
        """
        if self._closing:
            raise ShuttingDown("the worker is stopping")
        if not requests:
            return Outcome()
        if self._waiting_requests and self._waiting_requests + len(requests) > self._max_waiting:
            raise Overloaded(
                f"{self._waiting_requests} requests are waiting to be scored "
                f"(limit {self._max_waiting})"
            )
        loop = asyncio.get_running_loop()
        call = _Call(requests, loop.create_future())
        self._waiting.append(call)
        self._waiting_requests += len(requests)
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain(), name="http-coalescer")
        try:
            # wait_for cancels only this caller's own future on timeout; the batch runs
            # in the drainer task, which no caller's timeout or cancellation reaches.
            return await asyncio.wait_for(call.future, self._deadline_s)
        except TimeoutError as exc:
            raise DeliveryTimeout(
                f"prediction not ready within {self._deadline_s:g} s deadline"
            ) from exc

    async def close(self) -> None:
        """Answer every caller: waiting ones at once, the running batch within ``grace_s``."""
        self._closing = True
        while self._waiting:
            self._answer_shutting_down([self._waiting.popleft()])
        self._waiting_requests = 0
        drainer = self._drainer
        if drainer is None:
            return
        done, _ = await asyncio.wait({drainer}, timeout=self._grace_s)
        if done:
            return
        # Answer now rather than in the drainer's cleanup: a score that ignores
        # cancellation must not keep its callers waiting.
        self._answer_shutting_down(self._batch)
        drainer.cancel()
        done, _ = await asyncio.wait({drainer}, timeout=self._grace_s)
        if not done:
            log.warning("HTTP batch still running %.1f s after cancel; left behind", self._grace_s)

    async def _drain(self) -> None:
        try:
            while self._waiting and not self._closing:
                self._batch = self._take()
                if self._batch:
                    await self._run(self._batch)
                self._batch = []
        finally:
            # Reached with a batch only when cancelled mid-score (close, loop teardown).
            self._answer_shutting_down(self._batch)
            self._batch = []
            self._drainer = None

    async def _run(self, batch: list[_Call]) -> None:
        combined = [r for call in batch for r in call.requests]
        try:
            outcome = await self._score(combined, time.time())
            parts = split(outcome, [call.requests for call in batch])
        except Exception as exc:  # every caller must hear of it; none may hang
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        for call, part in zip(batch, parts, strict=True):
            if not call.future.done():  # done: the caller timed out or was cancelled
                call.future.set_result(part)

    def _take(self) -> list[_Call]:
        taken: list[_Call] = []
        size = 0
        while self._waiting:
            call = self._waiting[0]
            if taken and size + len(call.requests) > self._max_batch:
                break
            self._waiting.popleft()
            self._waiting_requests -= len(call.requests)
            if call.future.done():  # its caller gave up while waiting: do not score it
                continue
            taken.append(call)
            size += len(call.requests)
        return taken

    @staticmethod
    def _answer_shutting_down(calls: Sequence[_Call]) -> None:
        for call in calls:
            if not call.future.done():
                call.future.set_exception(ShuttingDown("the worker stopped before the answer"))


def split(outcome: Outcome, batch: Sequence[Sequence[ParsedRequest]]) -> list[Outcome]:
    """One outcome per caller, by the identity of the requests each submitted."""
    owner: dict[int, int] = {}
    for index, requests in enumerate(batch):
        for request in requests:
            owner[id(request)] = index
    parts = [Outcome() for _ in batch]
    for scored, request in zip(outcome.served, outcome.served_for, strict=True):
        part = parts[owner[id(request)]]
        part.served.append(scored)
        part.served_for.append(request)
    for scored, request in zip(outcome.shadow, outcome.shadow_for, strict=True):
        part = parts[owner[id(request)]]
        part.shadow.append(scored)
        part.shadow_for.append(request)
    for rejection in outcome.rejected:
        parts[owner[id(rejection.request)]].rejected.append(rejection)
    return parts
