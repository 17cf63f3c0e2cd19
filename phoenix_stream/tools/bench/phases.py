"""The phases of a benchmark run, each on its own topic prefix and consumer group.

Throughput phases produce their input first, while nothing consumes it, then start the
process under test and read its rate from its outputs' Kafka timestamps
(``stats.throughput``). Every process started is recorded, so ``stop_all`` can stop
them by pid whatever happened.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from phoenix_stream.settings import Settings
from phoenix_stream.tools.bench.config import BenchConfig
from phoenix_stream.tools.bench.floor_config import floor_env
from phoenix_stream.tools.bench.http_load import HttpLoadResult, run_http_load
from phoenix_stream.tools.bench.kafka_io import (
    ensure_topics,
    produce_records,
    read_outputs,
    wait_committed,
)
from phoenix_stream.tools.bench.latency import LatencyResult, measure_latency
from phoenix_stream.tools.bench.processes import ChildProcess, faust_command, python_module_command
from phoenix_stream.tools.bench.stats import throughput
from phoenix_stream.tools.simulator import RequestFactory, SimulationConfig, encode_records
from phoenix_stream.tools.worker_process import WorkerProcess, free_port

__all__ = ["BenchPhases", "PhaseResult", "say"]

WORKER_READY_TIMEOUT_S = 90.0
_PRODUCE_CHUNK = 10_000  # requests generated and encoded at a time


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


def say(text: str) -> None:
    """Print a progress line at once."""
    print(text, flush=True)


class BenchPhases:
    """The phases of one run, and every process they started (so all can be stopped)."""

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
        say(f"  worker {phase} ready in {ready:.1f} s")
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
        committed = await self.wait_done(group_id, prefix, ends, alive)
        return await self.outputs(key, prefix, requests, committed)

    async def wait_done(
        self, group_id: str, prefix: str, ends: dict[int, int], alive: Callable[[], bool]
    ) -> bool:
        """Wait (up to the phase timeout) until the group committed all input; whether it did."""
        return await wait_committed(
            self.settings.kafka_url,
            group_id,
            prefix + "requests",
            ends,
            self.config.phase_timeout_s,
            alive,
        )

    async def outputs(self, key: str, prefix: str, requests: int, committed: bool) -> PhaseResult:
        """Read a phase's outputs' timestamps: its rate (requests/s) and completeness."""
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
        say(
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
                "phoenix_stream.tools.bench.baseline",
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
            faust_command("-A", "phoenix_stream.tools.bench.floor_app", "worker", "-l", "info"),
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
                "phoenix_stream.tools.bench.http_baseline",
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
        say(f"  HTTP bare aiohttp: {bare.rps:,.0f} requests/s, p99 {bare.p(99):.1f} ms")
        ours = await run_http_load(
            f"{worker.base_url}/v1/predict", bodies, connections=connections, warmup=warmup
        )
        say(f"  HTTP worker view:  {ours.rps:,.0f} requests/s, p99 {ours.p(99):.1f} ms")
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
        say(
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
