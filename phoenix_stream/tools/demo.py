"""``phoenix-stream demo``: the whole pipeline on this machine, watched live.

Starts the embedded services (unless their URLs are set), trains the demo models if
missing, seeds the feature store, starts a worker, produces simulated requests (with a
few malformed records and unknown customers), shows progress every second and a summary
at the end. Everything it started is stopped again, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import statistics
import time
from dataclasses import dataclass, field

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from phoenix_stream.redaction import redact
from phoenix_stream.settings import Settings
from phoenix_stream.streaming.kafka_auth import KafkaAuth, client_options
from phoenix_stream.tools.services import running_services, services_given
from phoenix_stream.tools.simulator import SimulationConfig, run_simulation
from phoenix_stream.tools.worker_process import WorkerProcess, free_port
from phoenix_stream.training.seeding import seed_feature_store
from phoenix_stream.training.train import ensure_demo_models

# Seconds to wait, after the last request was produced, for the pipeline to drain.
DRAIN_TIMEOUT_S = 60.0
# Where the demo keeps the admin token it made for its worker (the console asks for it).
ADMIN_TOKEN_FILE = "console-admin-token"  # noqa: S105 (a file name, not a secret)


@dataclass(frozen=True)
class DemoConfig:
    """Traffic of the demo: seconds, requests/s, seeded customers, shares of bad input."""

    duration_s: float = 30.0
    rate: float = 300.0
    entities: int = 100_000
    malformed_share: float = 0.02
    unknown_share: float = 0.01


@dataclass
class Watcher:
    """Counts what comes out of the pipeline for this run (predictions, dead letters)."""

    run_id: str
    predictions: int = 0
    dead_letters: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def on_prediction(self, value: bytes) -> None:
        """Count a prediction of this run and its end-to-end latency."""
        data = orjson.loads(value)
        if not str(data.get("request_id", "")).startswith(self.run_id):
            return
        self.predictions += 1
        sent_at = data.get("sent_at")
        if sent_at:
            self.latencies_ms.append((time.time() - sent_at) * 1000.0)

    def percentile(self, q: float) -> float:
        """Latency percentile q (0..100) over the last 2000 predictions, ms."""
        recent = self.latencies_ms[-2000:]
        if len(recent) < 2:
            return recent[0] if recent else float("nan")
        return statistics.quantiles(recent, n=100)[min(98, max(0, int(q) - 1))]


async def _watch(settings: Settings, watcher: Watcher, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        **client_options(KafkaAuth.from_settings(settings)),
    )
    await consumer.start()
    try:
        topics = [settings.topic("predictions"), settings.topic("dead-letters")]
        partitions = [
            TopicPartition(t, p) for t in topics for p in (await _partitions(consumer, t))
        ]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in batches.items():
                for message in messages:
                    if tp.topic == topics[0]:
                        watcher.on_prediction(message.value or b"{}")
                    else:
                        watcher.dead_letters += 1
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    for _ in range(100):
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} did not appear")


async def _count_rows(dsn: str, run_id: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM predictions WHERE request_id LIKE $1", f"{run_id}-%"
        )
        return count
    finally:
        await connection.close()


def addresses_line(settings: Settings) -> str:
    """The services the demo uses, as it prints them: without their credentials."""
    return redact(
        f"  kafka {settings.kafka_url}  redis {settings.redis_url}  "
        f"postgres {settings.postgres_dsn}"
    )


def with_demo_admin_token(settings: Settings) -> tuple[Settings, str]:
    """Settings with an admin token, and how the console's user finds it.

    A token the user set is kept and never printed. Otherwise a new one is written to a
    file only the user can read, under the demo's state directory: never to the terminal
    or a log.
    """
    if settings.admin_token:
        return settings, "steering takes your PHOENIX_ADMIN_TOKEN"
    path = settings.state_dir / ADMIN_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT
    return settings.with_overrides(admin_token=token), f"the admin token to steer is in {path}"


def console_line(base_url: str, token_hint: str) -> str:
    """Where the operator console of the demo's worker is, and how to steer from it."""
    return f"operator console: {base_url}/  ({token_hint})"


def _say(text: str) -> None:
    print(text, flush=True)


async def run_demo(settings: Settings, config: DemoConfig) -> int:
    """Run the demo; returns the process exit code (0 when every request is accounted)."""
    own_services = not services_given()
    # The demo's own Kafka clients would print their group and subscription tables.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # Ctrl-C cancels the demo as SIGTERM does (ProjectCommand), so both stop what it started.
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, task.cancel)
    if own_services:
        _say(f"starting embedded services under {settings.state_dir} ...")
    worker: WorkerProcess | None = None
    try:
        async with running_services(settings, settings.state_dir, own=own_services) as settings:
            try:
                _say(addresses_line(settings))
                if await asyncio.to_thread(ensure_demo_models, settings.models_dir):
                    _say(f"trained the demo models into {settings.models_dir}")
                started = time.monotonic()
                seeded = await seed_feature_store(settings.redis_url, config.entities)
                _say(f"seeded {seeded} customer profiles in {time.monotonic() - started:.1f} s")
                settings = settings.with_overrides(web_port=free_port())
                settings, token_hint = with_demo_admin_token(settings)
                worker = WorkerProcess(settings, settings.state_dir / "demo-worker.log")
                worker.start()
                ready_s = await worker.wait_ready()
                _say(f"worker ready in {ready_s:.1f} s (log: {worker.log_path})")
                _say(console_line(worker.base_url, token_hint))
                _say(
                    "try the HTTP view while it runs:\n"
                    f"  curl -s -X POST {worker.base_url}/v1/predict -H 'content-type: "
                    'application/json\' -d \'{"entity_id": "c000042", "features": '
                    '{"credit_amount": 12.5, "duration_months": 24, "interest_rate": 7.9}}\''
                )
                return await _traffic(settings, config)
            finally:
                if worker is not None:  # before the services it uses
                    worker.stop()
    except asyncio.CancelledError:
        _say("\ninterrupted: stopping what the demo started ...")
        return 130
    finally:
        _say("stopped.")


async def _traffic(settings: Settings, config: DemoConfig) -> int:
    run_id = f"demo{int(time.time())}"
    watcher = Watcher(run_id)
    stop = asyncio.Event()
    watch_task = asyncio.create_task(_watch(settings, watcher, stop))
    await asyncio.sleep(0.5)  # let the watcher seek to the end before traffic starts
    simulation = SimulationConfig(
        rate=config.rate,
        duration_s=config.duration_s,
        entities=config.entities,
        malformed_share=config.malformed_share,
        unknown_share=config.unknown_share,
    )
    sim_task = asyncio.create_task(run_simulation(settings, simulation, run_id=run_id))
    started = time.monotonic()
    last = 0
    _say(f"producing {config.rate:.0f} requests/s for {config.duration_s:.0f} s ...")
    while not sim_task.done():
        await asyncio.sleep(1.0)
        rate = watcher.predictions - last
        last = watcher.predictions
        _say(
            f"  t={time.monotonic() - started:5.1f}s  predictions {watcher.predictions:7d}"
            f" ({rate:5d}/s)  dead letters {watcher.dead_letters:5d}  "
            f"e2e latency p50 {watcher.percentile(50):6.1f} ms p99 "
            f"{watcher.percentile(99):6.1f} ms"
        )
    report = await sim_task
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    expected = report.requests + report.malformed
    while time.monotonic() < deadline:
        if watcher.predictions + watcher.dead_letters >= expected:
            break
        await asyncio.sleep(0.5)
    rows = 0
    while time.monotonic() < deadline:
        rows = await _count_rows(settings.postgres_dsn, run_id)
        if rows >= watcher.predictions:
            break
        await asyncio.sleep(0.5)
    stop.set()
    await watch_task
    _say("\nsummary")
    _say(
        f"  requests produced        {report.requests} (+{report.malformed} malformed "
        f"records, {report.unknown_entities} for unknown customers)"
    )
    _say(f"  predictions emitted      {watcher.predictions}")
    _say(f"  dead letters             {watcher.dead_letters}")
    _say(f"  rows in PostgreSQL       {rows}")
    _say(
        f"  e2e latency              p50 {watcher.percentile(50):.1f} ms, "
        f"p99 {watcher.percentile(99):.1f} ms"
    )
    accounted = (
        watcher.predictions + watcher.dead_letters >= expected and rows >= watcher.predictions
    )
    if not accounted:
        _say("  WARNING: not every request was accounted for before the drain timeout")
    return 0 if accounted else 1
