"""Sizes of a benchmark run (``phoenix-stream bench``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BenchConfig"]


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one run: requests per phase, requests per batch record, latency rate
    (requests/s) and seconds, HTTP requests and connections, seeded entities, and the
    /health-under-flood phase (records of ``flood_batch`` requests, probe interval in ms,
    probes of the idle worker afterwards)."""

    requests: int = 60_000
    broker: str = "tansu"  # embedded broker when the bench starts its own: tansu or kafka
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
    flood_records: int = 100  # phase (f): batch records flooding one worker
    flood_batch: int = 1_000  # phase (f): requests per batch record
    health_interval_ms: float = 20.0  # phase (f): one GET /health every this many ms
    health_idle_probes: int = 250  # phase (f): probes of the same worker once idle

    @property
    def flood_requests(self) -> int:
        """Requests of phase (f): ``flood_records`` x ``flood_batch``."""
        return self.flood_records * self.flood_batch

    @property
    def batch_phase_requests(self) -> int:
        """Requests of phase (d): more than (c), so that it spans several agent batches
        (one agent batch there holds up to ``take_max`` x ``batch`` requests)."""
        return self.batch_requests if self.batch_requests is not None else 5 * self.requests
