"""Coalescing concurrent HTTP predictions into shared predictor calls.

Each HTTP request alone would pay for a Redis round trip, an ONNX call and a Kafka
produce of its own. Requests that arrive while a batch is being scored wait for the next
batch instead: one MGET, one ONNX call per version and one produce for all of them. No
timer is involved, so a lone request is scored at once; batches grow only with load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from phoenix_stream.messages.requests import ParsedRequest
from phoenix_stream.serving.predictor import Outcome

Score = Callable[[list[ParsedRequest], float], Awaitable[Outcome]]


class Coalescer:
    """Run ``score`` over everything submitted while the previous batch was running."""

    def __init__(self, score: Score, *, max_batch: int = 1000) -> None:
        self._score = score
        self._max_batch = max_batch
        self._waiting: list[tuple[Sequence[ParsedRequest], asyncio.Future[Outcome]]] = []
        self._running = False

    async def submit(self, requests: Sequence[ParsedRequest]) -> Outcome:
        """The outcome for ``requests`` (computed together with concurrent callers')."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((requests, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                try:
                    combined = [r for requests, _ in batch for r in requests]
                    outcome = await self._score(combined, time.time())
                except Exception as exc:  # every caller must hear of it; none may hang
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), part in zip(batch, split(outcome, batch), strict=True):
                    if not future.done():
                        future.set_result(part)
        finally:
            self._running = False

    def _take(self) -> list[tuple[Sequence[ParsedRequest], asyncio.Future[Outcome]]]:
        taken: list[tuple[Sequence[ParsedRequest], asyncio.Future[Outcome]]] = []
        size = 0
        while self._waiting and (not taken or size + len(self._waiting[0][0]) <= self._max_batch):
            item = self._waiting.pop(0)
            taken.append(item)
            size += len(item[0])
        return taken


def split(
    outcome: Outcome, batch: Sequence[tuple[Sequence[ParsedRequest], object]]
) -> list[Outcome]:
    """One outcome per caller, by the identity of the requests each submitted."""
    owner: dict[int, int] = {}
    for index, (requests, _) in enumerate(batch):
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
