"""Sizes of a benchmark run (``phoenix-stream bench``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BenchConfig"]


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one run: requests per phase, requests per batch record, latency rate
    (requests/s) and seconds, HTTP requests and connections, seeded entities."""

    requests: int = 60_000
    batch: int = 100
    latency_rate: float = 500
    latency_seconds: float = 10
    http_requests: int = 20_000
    http_connections: int = 32
    entities: int = 100_000
    batch_requests: int | None = None  # phase (d); None: 5 x requests
    http_warmup: int = 500
    phase_timeout_s: float = 180.0  # per throughput phase, seconds
    seed: int = 1

    @property
    def batch_phase_requests(self) -> int:
        """Requests of phase (d): more than (c), so that it spans several agent batches
        (one agent batch there holds up to ``take_max`` x ``batch`` requests)."""
        return self.batch_requests if self.batch_requests is not None else 5 * self.requests
