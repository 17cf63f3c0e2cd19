"""Liveness probes at a steady rate: ``GET /health`` latency while a worker is busy.

One client on one keep-alive connection sends a probe every ``interval_s`` on a fixed
schedule, one at a time, as a load balancer or Kubernetes would. A probe that is late
(the previous one answered after its slot) is sent at once and the missed slots are
skipped, not fired in a burst, so a stall shows as one long probe. Probing is bounded in
count and time, and also ends when ``stop`` is set (the flood it watches is over).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from phoenix_stream.tools.bench.stats import percentile

__all__ = ["HealthProbeResult", "next_slot", "probe_health"]


@dataclass
class HealthProbeResult:
    """Probes sent, their latencies (ms, answered or timed out) and failures."""

    latencies_ms: list[float] = field(default_factory=list)
    sent: int = 0  # probes sent
    errors: int = 0  # a status other than 200, a refused connection, or a timeout
    timeouts: int = 0  # no answer within the probe timeout; its latency is a lower bound
    skipped_slots: int = 0  # slots passed while a probe was still waiting for its answer
    elapsed_s: float = 0.0
    first_error: str = ""

    @property
    def probes(self) -> int:
        """Probes with a latency: answered (any status) or timed out."""
        return len(self.latencies_ms)

    def p(self, q: float) -> float:
        """Latency percentile q (0..100), ms; NaN without probes."""
        return percentile(self.latencies_ms, q)

    @property
    def max_ms(self) -> float:
        """The slowest probe, ms; NaN without probes."""
        return max(self.latencies_ms) if self.latencies_ms else float("nan")


def next_slot(previous: float, now: float, interval_s: float) -> tuple[float, int]:
    """When to send the probe after the one of slot ``previous`` (seconds), and how many
    slots were skipped: ``previous + interval_s``, or ``now`` if that slot has passed
    (the schedule then goes on from ``now``; the other slots passed are skipped)."""
    if interval_s <= 0:
        raise ValueError(f"interval must be positive, got {interval_s}")
    slot = previous + interval_s
    if slot >= now:
        return slot, 0
    passed = int((now - previous) // interval_s)
    return now, max(passed - 1, 0)  # max: rounding when now is a hair past the slot


async def probe_health(
    url: str,
    *,
    interval_s: float,
    max_probes: int,
    max_seconds: float,
    stop: asyncio.Event | None = None,
    timeout_s: float = 10.0,
) -> HealthProbeResult:
    """GET ``url`` every ``interval_s`` seconds until ``max_probes``, ``max_seconds`` or
    ``stop``; latencies in ms. ``timeout_s`` bounds each probe (seconds)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"bench traffic goes to 127.0.0.1 only, not {url}")
    result = HealthProbeResult()
    connector = aiohttp.TCPConnector(limit=1)  # one connection, reused by every probe
    started = time.perf_counter()
    deadline = started + max_seconds
    async with aiohttp.ClientSession(connector=connector) as session:
        slot = started
        while result.sent < max_probes and (stop is None or not stop.is_set()):
            now = time.perf_counter()
            if now >= deadline:
                break
            if slot > now:
                await _sleep_until(slot - now, stop)
                if stop is not None and stop.is_set():
                    break
            await _probe_once(session, url, timeout_s, result)
            slot, skipped = next_slot(slot, time.perf_counter(), interval_s)
            result.skipped_slots += skipped
    result.elapsed_s = time.perf_counter() - started
    return result


async def _sleep_until(delay_s: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(delay_s)
        return
    # Wake early when the flood ends, so no probe of an idle worker counts as flooded.
    try:
        await asyncio.wait_for(stop.wait(), delay_s)
    except TimeoutError:
        pass  # the slot came before the stop: probe now


async def _probe_once(
    session: aiohttp.ClientSession, url: str, timeout_s: float, result: HealthProbeResult
) -> None:
    result.sent += 1
    sent = time.perf_counter()
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            await response.read()
            status = response.status
    except TimeoutError:
        # A stalled loop is what is measured: keep the wait as a (lower-bound) latency.
        result.latencies_ms.append((time.perf_counter() - sent) * 1000.0)
        result.timeouts += 1
        result.errors += 1
        result.first_error = result.first_error or f"no answer within {timeout_s} s"
        return
    except aiohttp.ClientError as exc:
        result.errors += 1
        result.first_error = result.first_error or repr(exc)
        return
    result.latencies_ms.append((time.perf_counter() - sent) * 1000.0)
    if status != 200:
        result.errors += 1
        result.first_error = result.first_error or f"HTTP {status}"
