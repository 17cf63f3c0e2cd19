"""Closed-loop HTTP load: exactly N concurrent clients posting a fixed list of bodies.

``connections`` tasks share one ``TCPConnector(limit=connections)`` and take the next
body until the list is used up, so at most ``connections`` requests are in flight and
each connection is reused (keep-alive). A warm-up round, not counted, comes first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from phoenix_stream.tools.bench.stats import percentile

__all__ = ["HttpLoadResult", "run_http_load"]


@dataclass
class HttpLoadResult:
    """Outcome of one load run: counts, seconds, latencies (ms) of the 200 answers."""

    requests: int = 0  # answered with 200
    errors: int = 0  # other status or a client error
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    first_error: str = ""

    @property
    def rps(self) -> float:
        """Answered requests per second of wall time."""
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def p(self, q: float) -> float:
        """Latency percentile q (0..100), ms."""
        return percentile(self.latencies_ms, q)


async def _client(
    session: aiohttp.ClientSession,
    url: str,
    bodies: Sequence[bytes],
    cursor: list[int],
    result: HttpLoadResult,
) -> None:
    while cursor[0] < len(bodies):
        body = bodies[cursor[0]]
        cursor[0] += 1  # one event loop: no lock needed between the read and the bump
        started = time.perf_counter()
        try:
            async with session.post(url, data=body) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            result.errors += 1
            result.first_error = result.first_error or repr(exc)
            continue
        if status == 200:
            result.latencies_ms.append((time.perf_counter() - started) * 1000.0)
            result.requests += 1
        else:
            result.errors += 1
            result.first_error = result.first_error or f"HTTP {status}"


async def _round(
    session: aiohttp.ClientSession, url: str, bodies: Sequence[bytes], connections: int
) -> HttpLoadResult:
    result = HttpLoadResult()
    cursor = [0]
    started = time.perf_counter()
    await asyncio.gather(
        *(_client(session, url, bodies, cursor, result) for _ in range(connections))
    )
    result.elapsed_s = time.perf_counter() - started
    return result


async def run_http_load(
    url: str,
    bodies: Sequence[bytes],
    *,
    connections: int,
    warmup: int = 500,
    timeout_s: float = 10.0,
) -> HttpLoadResult:
    """POST every body to ``url`` with ``connections`` clients, after ``warmup`` posts.

    The warm-up reuses the first bodies; ``timeout_s`` bounds each request (seconds).
    """
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"bench traffic goes to 127.0.0.1 only, not {url}")
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        headers={"Content-Type": "application/json"},
    ) as session:
        if warmup > 0:
            await _round(session, url, bodies[:warmup], connections)
        return await _round(session, url, bodies, connections)
