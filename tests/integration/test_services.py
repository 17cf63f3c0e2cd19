"""The embedded services against real clients: start, status, idempotence, outage and restart."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from phoenix_stream.embedded import (
    ServiceAddresses,
    read_addresses,
    service_status,
    start_services,
    stop_services,
)
from phoenix_stream.embedded.kafka_probe import advertised_brokers
from phoenix_stream.embedded.redis_server import RedisService
from phoenix_stream.exceptions import ServiceError
from phoenix_stream.testing import create_topic


def bootstrap(kafka_url: str) -> str:
    """``kafka://host:port`` -> ``host:port``, as aiokafka wants it."""
    return urlsplit(kafka_url).netloc


def require_managed(managed_services: frozenset[str], name: str) -> None:
    """Skip the test when ``name`` is not started by this session (it comes from the env)."""
    if name not in managed_services:
        pytest.skip(f"{name} comes from the environment; this test restarts it")


async def test_redis_answers_ping_set_get(services: ServiceAddresses) -> None:
    client = aioredis.from_url(services.redis_url)
    try:
        assert await client.ping() is True
        key = f"test:{uuid.uuid4().hex}"
        await client.set(key, b"value", ex=60)
        assert await client.get(key) == b"value"
    finally:
        await client.aclose()


async def test_postgres_serves_database_phoenix(services: ServiceAddresses) -> None:
    assert urlsplit(services.postgres_dsn).hostname == "127.0.0.1"
    conn = await asyncpg.connect(services.postgres_dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_database()") == "phoenix"
    finally:
        await conn.close()


async def test_broker_round_trips_one_record(services: ServiceAddresses) -> None:
    servers = bootstrap(services.kafka_url)
    topic = f"test-services-{uuid.uuid4().hex[:12]}"
    await create_topic(servers, topic, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=10)
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"k1", b"hello")


def test_status_and_addresses_match_the_running_services(
    services: ServiceAddresses, services_state_dir: Path, managed_services: frozenset[str]
) -> None:
    if not managed_services:
        pytest.skip("every service comes from the environment")
    status = service_status(services_state_dir)
    addresses = read_addresses(services_state_dir)
    assert addresses is not None
    by_field = {
        "broker": (services.kafka_url, addresses.kafka_url),
        "redis": (services.redis_url, addresses.redis_url),
        "postgres": (services.postgres_dsn, addresses.postgres_dsn),
    }
    for name in managed_services:
        assert status[name].running, status[name]
        assert status[name].pid is not None
        assert status[name].url == by_field[name][0] == by_field[name][1]


def test_start_is_idempotent(
    services: ServiceAddresses, services_state_dir: Path, managed_services: frozenset[str]
) -> None:
    if not managed_services:
        pytest.skip("every service comes from the environment")
    names = sorted(managed_services)
    before = service_status(services_state_dir)
    again = start_services(services_state_dir, names)
    after = service_status(services_state_dir)
    for name in names:
        assert after[name].pid == before[name].pid  # kept, not restarted
        assert after[name].url == before[name].url
    if "redis" in managed_services:
        assert again.redis_url == services.redis_url


async def test_redis_outage_and_restart_on_same_port_keeps_data(
    services: ServiceAddresses, services_state_dir: Path, managed_services: frozenset[str]
) -> None:
    require_managed(managed_services, "redis")
    key = f"test:{uuid.uuid4().hex}"
    client = aioredis.from_url(services.redis_url, socket_connect_timeout=1)
    try:
        await client.set(key, b"survives")
        stop_services(services_state_dir, ["redis"])
        assert not service_status(services_state_dir)["redis"].running
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.ping()
        again = start_services(services_state_dir, ["redis"])
        assert again.redis_url == services.redis_url
        assert await client.get(key) == b"survives"  # dump written at stop, loaded at start
    finally:
        await client.aclose()


async def test_postgres_outage_and_restart_on_same_port_keeps_data(
    services: ServiceAddresses, services_state_dir: Path, managed_services: frozenset[str]
) -> None:
    require_managed(managed_services, "postgres")
    conn = await asyncpg.connect(services.postgres_dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS services_restart_check")
        await conn.execute("CREATE TABLE services_restart_check (v int)")
        await conn.execute("INSERT INTO services_restart_check VALUES (42)")
    finally:
        await conn.close()
    stop_services(services_state_dir, ["postgres"])
    assert not service_status(services_state_dir)["postgres"].running
    with pytest.raises(OSError):
        await asyncpg.connect(services.postgres_dsn, timeout=2)
    again = start_services(services_state_dir, ["postgres"])
    assert again.postgres_dsn == services.postgres_dsn
    conn = await asyncpg.connect(services.postgres_dsn)
    try:
        assert await conn.fetchval("SELECT v FROM services_restart_check") == 42
        await conn.execute("DROP TABLE services_restart_check")
    finally:
        await conn.close()


def test_fresh_state_dir_restarts_the_broker_on_its_port(tmp_path: Path) -> None:
    # A private broker: restarting the session's one would drop every topic that
    # session-scoped fixtures elsewhere have created.
    assert read_addresses(tmp_path) is None
    try:
        first = start_services(tmp_path, ["broker"])
        assert first.kafka_url.startswith("kafka://127.0.0.1:")
        assert (first.redis_url, first.postgres_dsn) == ("", "")
        status = service_status(tmp_path)
        assert status["broker"].running
        assert not status["redis"].running and not status["postgres"].running
        old_pid = status["broker"].pid
        stop_services(tmp_path, ["broker"])
        assert not service_status(tmp_path)["broker"].running
        assert read_addresses(tmp_path) == first  # a stopped service keeps its address
        again = start_services(tmp_path, ["broker"])
        status = service_status(tmp_path)
        assert again == first
        assert status["broker"].running and status["broker"].pid != old_pid
        port = urlsplit(again.kafka_url).port
        assert port is not None and ("127.0.0.1", port) in advertised_brokers(f"127.0.0.1:{port}")
    finally:
        stop_services(tmp_path, ["broker"])
    assert not service_status(tmp_path)["broker"].running


def test_redis_that_cannot_bind_raises_service_error_with_log(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(ServiceError) as caught:
            RedisService(tmp_path / "redis", ready_timeout=10).start(port)
    message = str(caught.value)
    assert message.startswith("redis could not start")
    assert "already in use" in message  # redis-server's own words, from its log tail
