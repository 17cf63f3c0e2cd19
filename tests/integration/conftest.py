"""Integration fixtures: trained models, seeded Redis, and workers on the real services.

Each worker gets its own topic prefix and consumer group, so tests never see each
other's records; the broker is started fresh for the session (a restart loses topics).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.settings import Settings, bootstrap_servers
from phoenix_stream.storage.sink import PredictionSink
from phoenix_stream.tools.worker_process import WorkerProcess, free_port
from phoenix_stream.training.seeding import seed_feature_store
from phoenix_stream.training.train import ensure_demo_models

SEEDED_ENTITIES = 2000


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models, trained once per session."""
    target = tmp_path_factory.mktemp("models")
    ensure_demo_models(target)
    return target


@pytest.fixture(scope="session")
async def seeded(backing_services: ServiceAddresses) -> int:
    """Profiles of entities c000000..c001999 in Redis (whatever the broker)."""
    return await seed_feature_store(backing_services.redis_url, SEEDED_ENTITIES)


def make_settings(
    services: ServiceAddresses, models_dir: Path, state_dir: Path, **overrides: object
) -> Settings:
    """Settings for one test worker: own topic prefix, group id and web port."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "kafka_url": services.kafka_url,
        "redis_url": services.redis_url,
        "postgres_dsn": services.postgres_dsn,
        "models_dir": models_dir,
        "state_dir": state_dir,
        "app_id": f"test-{tag}",
        "topic_prefix": f"t{tag}.",
        "topic_partitions": 2,
        "web_port": free_port(),
        # Below WorkerProcess.stop's 20 s: a stop that hangs ends the worker with its
        # tasks' stacks in the log (stop_deadline.py) before the test's SIGKILL would.
        "stop_timeout_s": 15.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def worker_factory(
    services: ServiceAddresses,
    models_dir: Path,
    seeded: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[_Factory]:
    """Start workers with given setting overrides; all are stopped after the module."""
    factory = _Factory(services, models_dir, tmp_path_factory.mktemp("workers"))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def factory_for(
    models_dir: Path, seeded: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[ServiceAddresses], _Factory]]:
    """Worker factories on other services (a cluster a test starts itself); all stopped."""
    made: list[_Factory] = []

    def build(addresses: ServiceAddresses) -> _Factory:
        factory = _Factory(addresses, models_dir, tmp_path_factory.mktemp("workers"))
        made.append(factory)
        return factory

    try:
        yield build
    finally:
        for factory in made:
            factory.stop_all()


class _Factory:
    def __init__(self, services: ServiceAddresses, models_dir: Path, state_dir: Path) -> None:
        self.services = services
        self.models_dir = models_dir
        self.state_dir = state_dir
        self.workers: list[WorkerProcess] = []

    async def start(self, **overrides: object) -> WorkerProcess:
        models_dir = Path(str(overrides.pop("models_dir", self.models_dir)))
        settings = make_settings(self.services, models_dir, self.state_dir, **overrides)
        # Workers of one group share the app id; the port tells their logs apart (and
        # wait_ready reads its own log for "Worker ready", not a group mate's).
        log_path = self.state_dir / f"{settings.app_id}-{settings.web_port}.log"
        worker = WorkerProcess(settings, log_path)
        self.workers.append(worker)
        worker.start()
        await worker.wait_ready(90.0)
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture(scope="module")
async def producer(services: ServiceAddresses) -> AsyncIterator[AIOKafkaProducer]:
    """A plain aiokafka producer (a client of the pipeline)."""
    client = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(services.kafka_url))
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@pytest.fixture
async def schema(services: ServiceAddresses) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL schema for one test, dropped after it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(services.postgres_dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
    finally:
        await conn.close()
    yield name
    conn = await asyncpg.connect(services.postgres_dsn, timeout=30)
    try:
        await conn.execute(f"DROP SCHEMA {name} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def sink(services: ServiceAddresses, schema: str) -> AsyncIterator[PredictionSink]:
    """A started sink confined to ``schema`` (its start applies the migrations), with short
    backoffs to keep tests quick; the stores built on it share its pool."""
    prediction_sink = PredictionSink(
        services.postgres_dsn,
        min_backoff_s=0.05,
        max_backoff_s=0.5,
        server_settings={"search_path": schema},
    )
    await prediction_sink.start()
    try:
        yield prediction_sink
    finally:
        await prediction_sink.stop()
