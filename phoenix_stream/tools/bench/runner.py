"""``phoenix-stream bench``: every figure of the issue, measured in one run.

Throughput with the same requests (one ``RequestFactory`` seed): (a) the hand-written
aiokafka loop, (b) a stock Faust pass-through, (c) the pipeline on single-request
records, (d) the pipeline on batch records; then HTTP (bare aiohttp versus the worker's
view), end-to-end latency on a normal worker at a steady rate, (f) ``GET /health`` while
a worker is flooded with big batch records, and worker start-up time.
See ``phases`` for how each is measured. Everything started here is stopped again, also
on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import statistics
import time
from collections.abc import Iterator
from typing import Any

import faust

from phoenix_stream.settings import Settings
from phoenix_stream.tools.bench.config import BenchConfig
from phoenix_stream.tools.bench.health_flood import health_under_flood
from phoenix_stream.tools.bench.http_load import HttpLoadResult
from phoenix_stream.tools.bench.latency import LatencyResult
from phoenix_stream.tools.bench.phases import BenchPhases, say
from phoenix_stream.tools.bench.stats import check_targets, format_table, ratio
from phoenix_stream.tools.services import running_services, services_given
from phoenix_stream.training.seeding import seed_feature_store
from phoenix_stream.training.train import ensure_demo_models

__all__ = ["BenchConfig", "run_bench"]


async def _run_phases(run: BenchPhases) -> dict[str, Any]:
    config = run.config
    load_start = os.getloadavg()
    started = time.monotonic()
    say(f"(a) baseline: hand-written aiokafka loop, {config.requests} requests ...")
    baseline = await run.baseline()
    say(f"(b) stock Faust pass-through, {config.requests} requests ...")
    floor = await run.faust_floor()
    say(f"(c) pipeline on single-request records, {config.requests} requests ...")
    pipeline, worker_c = await run.pipeline("c", "pipeline", config.requests, 1)
    worker_c.stop()
    n_batch = config.batch_phase_requests
    say(f"(d) pipeline on batch records of {config.batch}, {n_batch} requests ...")
    batch, worker_d = await run.pipeline("d", "batch_pipeline", n_batch, config.batch)
    say(f"HTTP, {config.http_requests} requests over {config.http_connections} connections ...")
    http_bare, http_ours = await run.http(worker_d)
    worker_d.stop()
    say(
        f"e2e latency at {config.latency_rate:.0f} requests/s for "
        f"{config.latency_seconds:.0f} s ..."
    )
    latency = await run.latency()
    ready_normal_s = run.ready_s[-1]  # the latency worker, all agents
    say(
        f"(f) /health every {config.health_interval_ms:.0f} ms while a worker takes "
        f"{config.flood_records} batch records of {config.flood_batch} requests ..."
    )
    flood = await health_under_flood(run)
    result: dict[str, Any] = {
        "baseline_rps": round(baseline.rps, 1),
        "faust_floor_rps": round(floor.rps, 1),
        "pipeline_rps": round(pipeline.rps, 1),
        "batch_pipeline_rps": round(batch.rps, 1),
        "ratio_vs_baseline": round(ratio(pipeline.rps, baseline.rps), 3),
        "batch_ratio_vs_baseline": round(ratio(batch.rps, baseline.rps), 3),
        "floor_ratio": round(ratio(pipeline.rps, floor.rps), 3),
        **_latency_figures(latency),
        **_http_figures(http_bare, http_ours, config),
        "worker_ready_s": round(statistics.median(run.ready_s), 2),
        "worker_ready_samples_s": [round(r, 2) for r in run.ready_s],
        "worker_ready_normal_s": round(ready_normal_s, 2),
    }
    for phase in (baseline, floor, pipeline, batch):
        result.update(phase.fields())
    result.update(flood.fields())
    result.update(
        {
            "batch": config.batch,
            "entities": config.entities,
            "topic_partitions": run.settings.topic_partitions,
            "cores": os.cpu_count(),
            "load_average": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "faust_version": faust.__version__,
            "duration_s": round(time.monotonic() - started, 1),
            "notes": run.notes,
        }
    )
    result["targets"] = {t.name: t.met for t in check_targets(result)}
    return result


def _latency_figures(latency: LatencyResult) -> dict[str, Any]:
    return {
        "e2e_p50_ms": round(latency.p(50), 2),
        "e2e_p99_ms": round(latency.p(99), 2),
        "e2e_rate_rps": round(latency.rate_rps, 1),
        "e2e_samples": len(latency.latencies_ms),
        "e2e_produced": latency.produced,
        "e2e_received": latency.received,
        "e2e_breakdown": latency.breakdown(),
    }


def _http_figures(
    bare: HttpLoadResult, ours: HttpLoadResult, config: BenchConfig
) -> dict[str, Any]:
    return {
        "http_rps": round(ours.rps, 1),
        "http_baseline_rps": round(bare.rps, 1),
        "http_ratio": round(ratio(ours.rps, bare.rps), 3),
        "http_p50_ms": round(ours.p(50), 2),
        "http_p99_ms": round(ours.p(99), 2),
        "http_baseline_p50_ms": round(bare.p(50), 2),
        "http_baseline_p99_ms": round(bare.p(99), 2),
        "http_errors": ours.errors,
        "http_baseline_errors": bare.errors,
        "http_requests": config.http_requests,
        "http_connections": config.http_connections,
    }


async def run_bench(
    settings: Settings, config: BenchConfig, *, own_services: bool | None = None
) -> dict[str, Any]:
    """Run every phase and print the table; returns the figures (rates in requests/s).

    ``own_services`` None: start embedded services under ``<state_dir>/bench`` unless all
    three service URLs are set in the environment (as ``phoenix-stream demo`` decides).
    """
    if own_services is None:
        own_services = not services_given()
    work_dir = (settings.state_dir / "bench").resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    services_dir = work_dir / "services"
    run: BenchPhases | None = None
    with _cancel_on_signals():
        if own_services:
            say(f"starting embedded services ({config.broker}) under {services_dir} ...")
        async with running_services(
            settings, services_dir, own=own_services, broker=config.broker
        ) as settings:
            try:
                if await asyncio.to_thread(ensure_demo_models, settings.models_dir):
                    say(f"trained the demo models into {settings.models_dir}")
                seeded = await seed_feature_store(settings.redis_url, config.entities)
                say(f"seeded {seeded} entities; logs under {work_dir}")
                run = BenchPhases(settings, config, work_dir)
                result = await _run_phases(run)
                result["broker"] = config.broker if own_services else settings.kafka_url
            finally:
                if run is not None:  # before the services its workers use
                    run.stop_all()
    say("")
    say(format_table(result))
    for note in result["notes"]:
        say(f"note: {note}")
    return result


@contextlib.contextmanager
def _cancel_on_signals() -> Iterator[None]:
    """SIGINT/SIGTERM cancel the current task, so ``finally`` blocks stop what we started."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if task is not None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, task.cancel)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or no signal support: Ctrl-C stays default
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
