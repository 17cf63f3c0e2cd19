"""Phase (f): ``GET /health`` latency while a worker is flooded with big batch records.

docs/architecture.md section 7 asks that the event loop is never blocked long enough to
stall ``/health``.
The phase starts a worker (inference agent only, as phase (d)), waits until it is
ready, then produces ``flood_records`` records of ``flood_batch`` requests each at once
and probes ``/health`` at a steady rate on one connection (``health_probe``) until the
worker's group has committed all of them. The same worker, idle afterwards, gives the
reference. The rate it sustained meanwhile is read from its outputs as in the other
throughput phases.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from phoenix_stream.tools.bench.health_probe import HealthProbeResult, probe_health
from phoenix_stream.tools.bench.kafka_io import produce_records
from phoenix_stream.tools.bench.phases import BenchPhases, PhaseResult, say
from phoenix_stream.tools.simulator import encode_records

__all__ = ["HealthFlood", "health_under_flood"]

KEY = "health_flood"


@dataclass(frozen=True)
class HealthFlood:
    """Probes during the flood and of the idle worker after it, and the flood's rate."""

    phase: PhaseResult
    flood: HealthProbeResult
    idle: HealthProbeResult
    records: int  # batch records of the flood
    batch: int  # requests per batch record
    interval_ms: float  # between probe slots

    def fields(self) -> dict[str, Any]:
        """The phase's entries of the result dict (latencies in ms, rate in requests/s)."""
        return {
            **self.phase.fields(),
            "health_flood_p50_ms": _ms(self.flood.p(50)),
            "health_flood_p99_ms": _ms(self.flood.p(99)),
            "health_flood_max_ms": _ms(self.flood.max_ms),
            "health_flood_probes": self.flood.probes,
            "health_flood_errors": self.flood.errors,
            "health_flood_skipped_slots": self.flood.skipped_slots,
            "health_flood_probe_s": round(self.flood.elapsed_s, 2),
            "health_idle_p50_ms": _ms(self.idle.p(50)),
            "health_idle_p99_ms": _ms(self.idle.p(99)),
            "health_idle_max_ms": _ms(self.idle.max_ms),
            "health_idle_probes": self.idle.probes,
            "health_idle_errors": self.idle.errors,
            "health_flood_records": self.records,
            "health_flood_batch": self.batch,
            "health_interval_ms": self.interval_ms,
        }


def _ms(value: float) -> float | None:
    # JSON has no NaN: a figure with no probe behind it is null.
    return None if math.isnan(value) else round(value, 2)


async def health_under_flood(run: BenchPhases) -> HealthFlood:
    """Run phase (f) on its own worker, which is stopped again before returning."""
    config = run.config
    interval_s = config.health_interval_ms / 1000.0
    settings = run.worker_settings("f", agents=("inference",))
    await run.topics(settings.topic_prefix)
    n = config.flood_requests
    # Encoded before the probes start, so that this process's CPU work does not delay
    # them; produced only once the worker is ready and probed, so that the probes see
    # the whole flood (a worker that stalls its loop would also stall its readiness).
    records = [
        record for chunk in run.requests(n) for record in encode_records(chunk, config.flood_batch)
    ]
    worker = await run.start_worker(settings, "f")
    try:

        def alive() -> bool:
            return worker.process is not None and worker.process.poll() is None

        url = f"{worker.base_url}/health"
        done = asyncio.Event()

        async def flood() -> bool:
            try:
                ends = await produce_records(
                    run.settings.kafka_url, settings.topic("requests"), records
                )
                return await run.wait_done(settings.app_id, settings.topic_prefix, ends, alive)
            finally:
                done.set()

        # Bounded by the phase timeout too: wait_done gives up then and sets ``done``.
        budget_s = config.phase_timeout_s + 30.0
        committed, flooded = await asyncio.gather(
            flood(),
            probe_health(
                url,
                interval_s=interval_s,
                max_probes=math.ceil(budget_s / interval_s),
                max_seconds=budget_s,
                stop=done,
            ),
        )
        phase = await run.outputs(KEY, settings.topic_prefix, n, committed)
        idle = await probe_health(
            url,
            interval_s=interval_s,
            max_probes=config.health_idle_probes,
            max_seconds=config.health_idle_probes * interval_s * 2 + 10.0,
        )
    finally:
        worker.stop()
    for name, probes in (("health_flood", flooded), ("health_idle", idle)):
        if probes.errors:
            run.notes.append(
                f"{name}: {probes.errors} of {probes.sent} "
                f"probes failed, first: {probes.first_error}"
            )
    if flooded.probes < 10:
        run.notes.append(
            f"health_flood: only {flooded.probes} probes while flooded; raise flood_records"
        )
    say(
        f"  /health while flooded: p50 {flooded.p(50):.1f} ms, p99 {flooded.p(99):.1f} ms, "
        f"max {flooded.max_ms:.1f} ms ({flooded.probes} probes); idle p99 {idle.p(99):.1f} ms"
    )
    return HealthFlood(
        phase, flooded, idle, config.flood_records, config.flood_batch, config.health_interval_ms
    )
