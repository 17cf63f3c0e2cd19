"""The worker creates every topic it uses as declared; the broker is asked what it has.

One worker with every agent (so the drift tables' changelogs exist too) on a fresh
prefix; then the topics are read back from the broker: partitions and replication from
metadata, ``cleanup.policy`` and ``min.insync.replicas`` from DescribeConfigs. A broker
that does not report a config skips that sub-check, saying so. A topic that exists with
other partitions than declared stops the worker at start, naming the topic.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.settings import AGENTS, TOPICS, Settings
from phoenix_stream.streaming.topics import TopicState, app_topic_specs, describe_topics
from phoenix_stream.tools.worker_process import WorkerProcess, free_port

# Generous: the machine is shared; the waits return as soon as they are met.
EXIT_TIMEOUT_S = 90.0
CHANGELOGS = ("drift-windows", "drift-monitors")


@pytest.fixture(scope="module")
async def declared(worker_factory: Any) -> AsyncIterator[tuple[Settings, dict[str, TopicState]]]:
    """A worker with every agent, started once, and the broker's view of its topics."""
    worker = await worker_factory.start(agents=AGENTS)
    settings: Settings = worker.settings
    names = [spec.name for spec in app_topic_specs(settings).values()]
    names += [_changelog(settings, table) for table in CHANGELOGS]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        # The changelogs are created once the tables start, a moment after /ready.
        deadline = time.monotonic() + 60.0
        states = await describe_topics(admin, names)
        while set(names) - set(states) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            states = await describe_topics(admin, names)
    finally:
        await admin.close()
    yield settings, states


def _changelog(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"


async def test_every_topic_has_its_partitions_and_replication(
    declared: tuple[Settings, dict[str, TopicState]],
) -> None:
    settings, states = declared
    specs = app_topic_specs(settings)
    assert set(TOPICS) == set(specs)  # the names are pinned in tests/unit/streaming
    found = {short: states.get(spec.name) for short, spec in specs.items()}
    assert all(found.values()), f"topics missing on the broker: {found}"
    partitions = {short: state.partitions for short, state in found.items() if state}
    assert partitions == {
        short: (1 if short in ("deployments", "retrain") else settings.topic_partitions)
        for short in specs
    }
    assert {state.replication for state in found.values() if state} == {settings.topic_replication}
    for table in CHANGELOGS:
        changelog = states.get(_changelog(settings, table))
        assert changelog is not None, f"changelog of {table} missing"
        assert changelog.partitions == settings.topic_partitions
        assert changelog.replication == settings.topic_replication


def _reported(state: TopicState, config: str) -> str:
    value = (state.configs or {}).get(config)
    if value is None:
        pytest.skip(f"the broker does not report {config} of {state.name}: cannot check it")
    return value


async def test_cleanup_policy_is_compact_for_deployments_and_delete_elsewhere(
    declared: tuple[Settings, dict[str, TopicState]],
) -> None:
    settings, states = declared
    policies = {
        short: _reported(states[spec.name], "cleanup.policy")
        for short, spec in app_topic_specs(settings).items()
    }
    assert policies == {
        short: ("compact" if short == "deployments" else "delete") for short in policies
    }
    for table in CHANGELOGS:
        policy = _reported(states[_changelog(settings, table)], "cleanup.policy")
        assert "compact" in policy.split(",")  # Faust's: a table's latest value per key


async def test_min_insync_replicas_of_every_topic(
    declared: tuple[Settings, dict[str, TopicState]],
) -> None:
    settings, states = declared
    names = [spec.name for spec in app_topic_specs(settings).values()]
    names += [_changelog(settings, table) for table in CHANGELOGS]
    values = {name: _reported(states[name], "min.insync.replicas") for name in names}
    assert values == dict.fromkeys(names, str(settings.topic_min_insync))


async def test_a_topic_with_other_partitions_stops_the_start_naming_it(
    services: ServiceAddresses, models_dir: Path, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_url=services.kafka_url,
        redis_url=services.redis_url,
        postgres_dsn=services.postgres_dsn,
        models_dir=models_dir,
        state_dir=tmp_path,
        app_id=f"test-{tag}",
        topic_prefix=f"t{tag}.",
        topic_partitions=2,
        web_port=free_port(),
    )
    deployments = settings.topic("deployments")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        # As an earlier auto-creation left it: 4 partitions where the app declares 1.
        await admin.create_topics([NewTopic(deployments, 4, settings.topic_replication)])
    finally:
        await admin.close()
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        assert worker.process is not None
        code = await asyncio.to_thread(worker.process.wait, EXIT_TIMEOUT_S)
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert code != 0, log[-3000:]
    assert f"{deployments} has 4 partitions, the app declares 1" in log, log[-3000:]
