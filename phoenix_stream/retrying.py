"""How every part of the worker waits out an outage: one backoff schedule, one retry loop.

The failure policy (docs/architecture.md section 7) says an outage of Kafka,
Redis or PostgreSQL is waited out, never turned into lost data or a crashed worker. The
sink, the feedback store, the agents' failure policy, the emitter and the deployments
reader all wait the same way: capped exponential backoff with equal jitter, so workers
hit by the same outage spread out yet never retry in a busy loop. What differs between
them is only what counts as an outage, what a stopping worker does instead of waiting,
and what a retry is logged or counted as; :func:`retry_outages` takes those as arguments.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["Backoff", "OnRetry", "backoff_delay", "logged_retry", "retry_outages"]

T = TypeVar("T")
OnRetry = Callable[[BaseException, int, float], None]  # (the outage, failures so far, delay)


def backoff_delay(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): exponential, capped, jittered.

    Equal jitter: a uniform draw in [d/2, d] for d = min(max_s, min_s * 2**attempt).
    """
    ceiling = min(max_s, min_s * 2.0 ** min(attempt, 32))
    return rng.uniform(ceiling / 2.0, ceiling)


@dataclass
class Backoff:
    """The delays of one run of retries, in seconds; ``failures`` counts those so far."""

    min_s: float = 0.1
    max_s: float = 5.0
    rng: random.Random = field(default_factory=random.Random)  # jitter only, not security
    failures: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(
                f"need 0 < min_backoff_s <= max_backoff_s, got {self.min_s}, {self.max_s}"
            )

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failure."""
        delay = backoff_delay(self.failures, self.min_s, self.max_s, self.rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        """Start again from the shortest delay (after a success)."""
        self.failures = 0


def logged_retry(
    logger: logging.Logger, failed: str, count: Callable[[], None] = lambda: None
) -> OnRetry:
    """An ``on_retry`` that counts the retry and logs "{failed} (attempt n): why; retrying"."""

    def report(exc: BaseException, failures: int, delay: float) -> None:
        count()
        logger.warning("%s (attempt %d): %s; retrying in %.2f s", failed, failures, exc, delay)

    return report


def _never_stopping(exc: BaseException) -> BaseException | None:
    return None


def _no_report(exc: BaseException, failures: int, delay: float) -> None:
    return None


async def retry_outages(
    operation: Callable[[], Awaitable[T]],
    *,
    is_outage: Callable[[BaseException], bool],
    backoff: Backoff,
    on_retry: OnRetry = _no_report,
    stopping: Callable[[BaseException], BaseException | None] = _never_stopping,
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """Run ``operation`` until it returns, waiting out the failures ``is_outage`` accepts.

    Any other exception is raised at once. After an outage, ``stopping(exc)`` may return an
    exception to raise instead of waiting (from ``exc`` unless it names a cause of its own):
    a stopping worker leaves its input unacknowledged rather than hold up the stop.
    Otherwise ``on_retry(exc, failures, delay)`` is called (log, count) and ``pause(delay)``
    awaited before the next attempt.
    """
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not is_outage(exc):
                raise
            instead = stopping(exc)
            if instead is not None:
                raise instead from (exc if instead.__cause__ is None else instead.__cause__)
            delay = backoff.next_delay()
            on_retry(exc, backoff.failures, delay)
            await pause(delay)
