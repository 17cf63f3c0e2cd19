"""``phoenix-stream bench``: every figure of the issue, measured in one run.

Throughput phases, each on its own topic prefix and consumer group, with the same
requests (one ``RequestFactory`` seed): (a) the hand-written aiokafka loop, (b) a stock
Faust pass-through, (c) the pipeline on single-request records, (d) the pipeline on batch
records. Input is produced first, while nothing consumes it; then the process under test
starts, and its rate is read from its outputs' Kafka timestamps (``stats.throughput``).
Then HTTP (bare aiohttp versus the worker's view), end-to-end latency on a normal worker
at a steady rate, and worker start-up time. Everything started here is stopped again,
also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import orjson

from phoenix_stream.bench.floor_config import floor_env
from phoenix_stream.bench.http_load import HttpLoadResult, run_http_load
from phoenix_stream.bench.kafka_io import (
    ensure_topics,
    produce_records,
    read_outputs,
    wait_committed,
)
from phoenix_stream.bench.latency import LatencyResult, measure_latency
from phoenix_stream.bench.processes import ChildProcess, faust_command, python_module_command
from phoenix_stream.bench.stats import check_targets, format_table, ratio, throughput
from phoenix_stream.seeding import seed_feature_store
from phoenix_stream.services import SERVICE_NAMES, start_services, stop_services
from phoenix_stream.settings import ENV, Settings
from phoenix_stream.simulator import RequestFactory, SimulationConfig, encode_records
from phoenix_stream.training import ensure_demo_models
from phoenix_stream.worker_process import WorkerProcess, free_port

__all__ = ["BenchConfig", "PhaseResult", "run_bench"]

WORKER_READY_TIMEOUT_S = 90.0
_PRODUCE_CHUNK = 10_000  # requests generated and encoded at a time


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
    batch_requests: int | None = None  # phase (d); None: 5 x requests (see batch_phase)
    http_warmup: int = 500
    phase_timeout_s: float = 180.0  # per throughput phase, seconds
    seed: int = 1

    @property
    def batch_phase_requests(self) -> int:
        """Requests of phase (d): more than (c), so that it spans several agent batches
        (one agent batch there holds up to ``take_max`` x ``batch`` requests)."""
        return self.batch_requests if self.batch_requests is not None else 5 * self.requests


@dataclass(frozen=True)
class PhaseResult:
    """One throughput phase: requests in, outputs seen, rate (requests/s) and quality."""

    key: str
    requests: int
    outputs: int
    rps: float
    span_s: float
    complete: bool  # every input committed and every output seen before the timeout
    degraded: int  # outputs flagged degraded (features read failed)

    def fields(self) -> dict[str, Any]:
        """The phase's entries of the result dict."""
        return {
            f"{self.key}_rps": round(self.rps, 1),
            f"{self.key}_requests": self.requests,
            f"{self.key}_outputs": self.outputs,
            f"{self.key}_span_s": round(self.span_s, 3),
            f"{self.key}_complete": self.complete,
            f"{self.key}_degraded": self.degraded,
        }


def _say(text: str) -> None:
    print(text, flush=True)


class _BenchRun:
    """State of one run: settings, sizes, the processes started (to stop them all)."""

    def __init__(self, settings: Settings, config: BenchConfig, work_dir: Path) -> None:
        self.settings = settings
        self.config = config
        self.work_dir = work_dir
        self.tag = uuid.uuid4().hex[:6]
        self.models_dir = settings.models_dir.resolve()
        self.children: list[ChildProcess] = []
        self.workers: list[WorkerProcess] = []
        self.ready_s: list[float] = []
        self.notes: list[str] = []

    # -- helpers -------------------------------------------------------------------

    def prefix(self, phase: str) -> str:
        """Topic prefix of a phase, unique to this run."""
        return f"bench{self.tag}.{phase}."

    def requests(self, n: int) -> Iterator[list[dict[str, Any]]]:
        """The run's first ``n`` requests (same seed every phase), in chunks."""
        factory = RequestFactory(
            SimulationConfig(entities=self.config.entities, seed=self.config.seed),
            run_id=f"bench{self.tag}",
        )
        for start in range(0, n, _PRODUCE_CHUNK):
            yield factory.requests(min(_PRODUCE_CHUNK, n - start))

    async def produce(self, topic: str, n: int, batch: int) -> dict[int, int]:
        """Pre-produce the first ``n`` requests to ``topic``; end offset per partition."""

        def records() -> Iterator[tuple[bytes, bytes]]:
            for chunk in self.requests(n):
                yield from encode_records(chunk, batch)

        return await produce_records(self.settings.kafka_url, topic, records())

    async def topics(self, prefix: str) -> None:
        """Create a phase's topics before anything uses them (fixed partition count)."""
        names = ("requests", "predictions", "shadow-predictions", "dead-letters")
        await ensure_topics(
            self.settings.kafka_url, [prefix + n for n in names], self.settings.topic_partitions
        )

    def worker_settings(self, phase: str, **overrides: Any) -> Settings:
        """Settings of a worker for a phase: own prefix, group and web port."""
        return self.settings.with_overrides(
            app_id=f"bench-{self.tag}-{phase}",
            topic_prefix=self.prefix(phase),
            web_port=free_port(),
            state_dir=self.work_dir / phase,
            **overrides,
        )

    async def start_worker(self, settings: Settings, phase: str) -> WorkerProcess:
        """Start a worker and wait until it is ready; its ready time is recorded."""
        # Faust creates its datadir without parents.
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.work_dir / f"worker-{phase}.log"
        log_path.unlink(missing_ok=True)  # readiness is read from this run's log only
        worker = WorkerProcess(settings, log_path)
        self.workers.append(worker)
        worker.start()
        ready = await worker.wait_ready(WORKER_READY_TIMEOUT_S)
        self.ready_s.append(ready)
        _say(f"  worker {phase} ready in {ready:.1f} s")
        return worker

    def start_child(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> ChildProcess:
        """Start a helper process, logging to the work dir."""
        log_path = self.work_dir / f"{name}.log"
        log_path.unlink(missing_ok=True)
        child = ChildProcess(name, argv, log_path, env)
        self.children.append(child)
        child.start()
        return child

    async def measure(
        self,
        key: str,
        group_id: str,
        prefix: str,
        ends: dict[int, int],
        requests: int,
        alive: Callable[[], bool],
    ) -> PhaseResult:
        """Wait for the group to commit all input, then read the outputs' timestamps."""
        timeout_s = self.config.phase_timeout_s
        committed = await wait_committed(
            self.settings.kafka_url, group_id, prefix + "requests", ends, timeout_s, alive
        )
        read = await read_outputs(
            self.settings.kafka_url,
            prefix + "predictions",
            requests,
            timeout_s=30.0 if committed else 5.0,
        )
        rate = throughput(read.stamps)
        complete = committed and len(read.stamps) >= requests
        if not complete:
            self.notes.append(
                f"{key}: incomplete ({len(read.stamps)} of {requests} outputs, "
                f"input committed: {committed}); rate is over what arrived"
            )
        if not read.create_time:
            self.notes.append(f"{key}: outputs carry LogAppendTime, not CreateTime")
        result = PhaseResult(
            key, requests, len(read.stamps), rate.rps, rate.span_s, complete, read.degraded
        )
        _say(
            f"  {key}: {rate.rps:,.0f} requests/s ({len(read.stamps)} outputs, "
            f"{rate.span_s:.2f} s measured{'' if complete else ', INCOMPLETE'})"
        )
        return result

    # -- phases --------------------------------------------------------------------

    async def baseline(self) -> PhaseResult:
        """(a) the hand-written aiokafka + MGET + ONNX + send_batch loop."""
        n, prefix, group = self.config.requests, self.prefix("a"), f"bench-{self.tag}-a"
        await self.topics(prefix)
        ends = await self.produce(prefix + "requests", n, 1)
        s = self.settings
        child = self.start_child(
            "baseline",
            python_module_command(
                "phoenix_stream.bench.baseline",
                "--kafka-url",
                s.kafka_url,
                "--redis-url",
                s.redis_url,
                "--models-dir",
                str(self.models_dir),
                "--in-topic",
                prefix + "requests",
                "--out-topic",
                prefix + "predictions",
                "--group-id",
                group,
                "--model",
                s.default_model,
                "--version",
                s.champion_version,
                "--linger-ms",
                str(s.producer_linger_ms),
                "--redis-timeout-s",
                str(s.redis_timeout_s),
            ),
        )
        try:
            return await self.measure("baseline", group, prefix, ends, n, child.alive)
        finally:
            child.stop()

    async def faust_floor(self) -> PhaseResult:
        """(b) a stock Faust pass-through agent on the same records."""
        n, prefix, group = self.config.requests, self.prefix("b"), f"bench-{self.tag}-b"
        await self.topics(prefix)
        ends = await self.produce(prefix + "requests", n, 1)
        env = floor_env(
            kafka_url=self.settings.kafka_url,
            app_id=group,
            in_topic=prefix + "requests",
            out_topic=prefix + "predictions",
            partitions=self.settings.topic_partitions,
            datadir=self.work_dir / "floor-data",
            web_port=free_port(),
        )
        child = self.start_child(
            "faust-floor",
            faust_command("-A", "phoenix_stream.bench.floor_app", "worker", "-l", "info"),
            env,
        )
        try:
            return await self.measure("faust_floor", group, prefix, ends, n, child.alive)
        finally:
            child.stop()

    async def pipeline(
        self, phase: str, key: str, n: int, batch: int
    ) -> tuple[PhaseResult, WorkerProcess]:
        """(c)/(d) the real worker, inference agent only, on pre-produced records."""
        settings = self.worker_settings(phase, agents=("inference",))
        await self.topics(settings.topic_prefix)
        ends = await self.produce(settings.topic("requests"), n, batch)
        worker = await self.start_worker(settings, phase)

        def alive() -> bool:
            return worker.process is not None and worker.process.poll() is None

        return await self.measure(
            key, settings.app_id, settings.topic_prefix, ends, n, alive
        ), worker

    async def http(self, worker: WorkerProcess) -> tuple[HttpLoadResult, HttpLoadResult]:
        """Bare aiohttp versus the worker's ``POST /v1/predict``, same bodies and load."""
        bodies = [
            orjson.dumps({k: r[k] for k in ("request_id", "entity_id", "features")})
            for chunk in self.requests(self.config.http_requests)
            for r in chunk
        ]
        prefix = self.prefix("h")
        await self.topics(prefix)
        port = free_port()
        s = self.settings
        child = self.start_child(
            "http-baseline",
            python_module_command(
                "phoenix_stream.bench.http_baseline",
                "--port",
                str(port),
                "--kafka-url",
                s.kafka_url,
                "--redis-url",
                s.redis_url,
                "--models-dir",
                str(self.models_dir),
                "--topic",
                prefix + "predictions",
                "--model",
                s.default_model,
                "--version",
                s.champion_version,
                "--linger-ms",
                str(s.producer_linger_ms),
                "--redis-timeout-s",
                str(s.redis_timeout_s),
            ),
        )
        connections, warmup = self.config.http_connections, self.config.http_warmup
        try:
            await child.wait_http_ready(f"http://127.0.0.1:{port}/ready")
            bare = await run_http_load(
                f"http://127.0.0.1:{port}/v1/predict",
                bodies,
                connections=connections,
                warmup=warmup,
            )
        finally:
            child.stop()
        _say(f"  HTTP bare aiohttp: {bare.rps:,.0f} requests/s, p99 {bare.p(99):.1f} ms")
        ours = await run_http_load(
            f"{worker.base_url}/v1/predict", bodies, connections=connections, warmup=warmup
        )
        _say(f"  HTTP worker view:  {ours.rps:,.0f} requests/s, p99 {ours.p(99):.1f} ms")
        for name, load in (("http_baseline", bare), ("http", ours)):
            if load.errors:
                self.notes.append(
                    f"{name}: {load.errors} failed requests, first: {load.first_error}"
                )
        return bare, ours

    async def latency(self) -> LatencyResult:
        """End-to-end latency on a normally configured worker (sink on)."""
        settings = self.worker_settings("e")
        await self.topics(settings.topic_prefix)
        worker = await self.start_worker(settings, "e")
        n = int(self.config.latency_rate * self.config.latency_seconds)
        requests = [r for chunk in self.requests(n) for r in chunk]
        try:
            result = await measure_latency(
                self.settings.kafka_url,
                settings.topic("requests"),
                settings.topic("predictions"),
                requests,
                rate=self.config.latency_rate,
            )
        finally:
            worker.stop()
        if result.received < result.produced:
            self.notes.append(
                f"latency: {result.received} of {result.produced} predictions "
                "arrived before the drain timeout"
            )
        _say(
            f"  e2e latency at {result.rate_rps:.0f} requests/s: p50 {result.p(50):.1f} ms, "
            f"p99 {result.p(99):.1f} ms ({len(result.latencies_ms)} samples)"
        )
        return result

    def stop_all(self) -> None:
        """Stop every worker and helper process of the run, by pid."""
        for worker in self.workers:
            worker.stop()
        for child in self.children:
            child.stop()


async def _run_phases(run: _BenchRun) -> dict[str, Any]:
    config = run.config
    load_start = os.getloadavg()
    started = time.monotonic()
    _say(f"(a) baseline: hand-written aiokafka loop, {config.requests} requests ...")
    baseline = await run.baseline()
    _say(f"(b) stock Faust pass-through, {config.requests} requests ...")
    floor = await run.faust_floor()
    _say(f"(c) pipeline on single-request records, {config.requests} requests ...")
    pipeline, worker_c = await run.pipeline("c", "pipeline", config.requests, 1)
    worker_c.stop()
    n_batch = config.batch_phase_requests
    _say(f"(d) pipeline on batch records of {config.batch}, {n_batch} requests ...")
    batch, worker_d = await run.pipeline("d", "batch_pipeline", n_batch, config.batch)
    _say(f"HTTP, {config.http_requests} requests over {config.http_connections} connections ...")
    http_bare, http_ours = await run.http(worker_d)
    worker_d.stop()
    _say(
        f"e2e latency at {config.latency_rate:.0f} requests/s for "
        f"{config.latency_seconds:.0f} s ..."
    )
    latency = await run.latency()
    result: dict[str, Any] = {
        "baseline_rps": round(baseline.rps, 1),
        "faust_floor_rps": round(floor.rps, 1),
        "pipeline_rps": round(pipeline.rps, 1),
        "batch_pipeline_rps": round(batch.rps, 1),
        "ratio_vs_baseline": round(ratio(pipeline.rps, baseline.rps), 3),
        "batch_ratio_vs_baseline": round(ratio(batch.rps, baseline.rps), 3),
        "floor_ratio": round(ratio(pipeline.rps, floor.rps), 3),
        "e2e_p50_ms": round(latency.p(50), 2),
        "e2e_p99_ms": round(latency.p(99), 2),
        "e2e_rate_rps": round(latency.rate_rps, 1),
        "e2e_samples": len(latency.latencies_ms),
        "e2e_produced": latency.produced,
        "e2e_received": latency.received,
        "http_rps": round(http_ours.rps, 1),
        "http_baseline_rps": round(http_bare.rps, 1),
        "http_ratio": round(ratio(http_ours.rps, http_bare.rps), 3),
        "http_p50_ms": round(http_ours.p(50), 2),
        "http_p99_ms": round(http_ours.p(99), 2),
        "http_baseline_p50_ms": round(http_bare.p(50), 2),
        "http_baseline_p99_ms": round(http_bare.p(99), 2),
        "http_errors": http_ours.errors,
        "http_baseline_errors": http_bare.errors,
        "http_requests": config.http_requests,
        "http_connections": config.http_connections,
        "worker_ready_s": round(statistics.median(run.ready_s), 2),
        "worker_ready_samples_s": [round(r, 2) for r in run.ready_s],
        "worker_ready_normal_s": round(run.ready_s[-1], 2),  # the latency worker, all agents
    }
    for phase in (baseline, floor, pipeline, batch):
        result.update(phase.fields())
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


async def run_bench(
    settings: Settings, config: BenchConfig, *, own_services: bool | None = None
) -> dict[str, Any]:
    """Run every phase and print the table; returns the figures (rates in requests/s).

    ``own_services`` None: start embedded services under ``<state_dir>/bench`` unless all
    three service URLs are set in the environment (as ``phoenix-stream demo`` decides).
    """
    if own_services is None:
        own_services = not all(
            os.environ.get(ENV[name]) for name in ("kafka_url", "redis_url", "postgres_dsn")
        )
    work_dir = (settings.state_dir / "bench").resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    services_dir = work_dir / "services"
    run: _BenchRun | None = None
    with _cancel_on_signals():
        try:
            if own_services:
                _say(f"starting embedded services under {services_dir} ...")
                addresses = await asyncio.to_thread(start_services, services_dir)
                settings = settings.with_overrides(
                    kafka_url=addresses.kafka_url,
                    redis_url=addresses.redis_url,
                    postgres_dsn=addresses.postgres_dsn,
                )
            if await asyncio.to_thread(ensure_demo_models, settings.models_dir):
                _say(f"trained the demo models into {settings.models_dir}")
            seeded = await seed_feature_store(settings.redis_url, config.entities)
            _say(f"seeded {seeded} entities; logs under {work_dir}")
            run = _BenchRun(settings, config, work_dir)
            result = await _run_phases(run)
        finally:
            if run is not None:
                run.stop_all()
            if own_services:
                await asyncio.to_thread(stop_services, services_dir, SERVICE_NAMES)
    _say("")
    _say(format_table(result))
    for note in result["notes"]:
        _say(f"note: {note}")
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
