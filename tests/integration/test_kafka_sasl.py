"""An authenticated Kafka: SASL SCRAM-SHA-512 logins and ACLs on a real 1-node cluster.

One secured cluster of its own for the module (users created when its storage is
formatted, deny when no ACL matches). The worker logs in as ``worker`` with the ACLs of
``streaming.acls.worker_acls`` and predicts end to end; the ``client`` principal may
write ``requests`` only, so the broker refuses its records for ``deployments``; a wrong
password is refused at once, by name, and never printed.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.embedded.kafka import KafkaClusterService
from phoenix_stream.embedded.process import free_port
from phoenix_stream.exceptions import KafkaAuthError
from phoenix_stream.settings import Settings, bootstrap_servers
from phoenix_stream.streaming.acls import Acl, Operation, Resource, create_acls, worker_acls
from phoenix_stream.streaming.kafka_auth import KafkaAuth, check_login
from phoenix_stream.streaming.producers import new_producer
from phoenix_stream.testing import consume_json, covers
from phoenix_stream.tools.worker_process import WorkerProcess

pytestmark = [pytest.mark.brokers("kafka"), pytest.mark.timeout(600)]

APP_ID = "sasl-worker"
PREFIX = "sasl."
USERS = ("admin", "worker", "client")
# A refused login must be told within this (aiokafka's own clients retry for minutes), s.
REFUSAL_BOUND_S = 30.0


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    """A fresh password per user for this module's cluster."""
    return {user: secrets.token_urlsafe(18) for user in USERS}


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, passwords: dict[str, str]
) -> Iterator[tuple[KafkaClusterService, str]]:
    """The secured 1-node cluster and its url, with the worker's and the client's ACLs."""
    service = KafkaClusterService(tmp_path_factory.mktemp("kafka-sasl"), 1, users=passwords)
    record = service.start(free_port())
    try:
        acls = worker_acls("worker", Settings(app_id=APP_ID, topic_prefix=PREFIX))
        acls += [
            Acl("client", Resource.TOPIC, f"{PREFIX}requests", operation)
            for operation in (Operation.WRITE, Operation.DESCRIBE)
        ]
        asyncio.run(create_acls(record.url, service.auth(), acls))
        yield service, record.url
    finally:
        service.stop(record)


@pytest.fixture(scope="module")
async def worker(
    cluster: tuple[KafkaClusterService, str],
    backing_services: ServiceAddresses,
    factory_for: Callable[[ServiceAddresses], Any],
) -> WorkerProcess:
    """A worker logged in as ``worker`` (no super user, only its ACLs)."""
    service, url = cluster
    factory = factory_for(
        ServiceAddresses(url, backing_services.redis_url, backing_services.postgres_dsn)
    )
    auth = service.auth("worker")
    started: WorkerProcess = await factory.start(
        app_id=APP_ID,
        topic_prefix=PREFIX,
        kafka_security=auth.security,
        kafka_username=auth.username,
        kafka_password=auth.password,
    )
    return started


async def test_the_worker_predicts_with_its_own_principal(
    broker_kind: str,
    cluster: tuple[KafkaClusterService, str],
    worker: WorkerProcess,
    passwords: dict[str, str],
) -> None:
    service, url = cluster
    run = uuid.uuid4().hex[:8]
    ids = [f"sasl-{run}-{i}" for i in range(20)]
    producer = new_producer(url, auth=service.auth("client"))
    await producer.start()
    try:
        for i, request_id in enumerate(ids):
            request = {"request_id": request_id, "entity_id": f"c{i:06d}"}
            await producer.send_and_wait(
                f"{PREFIX}requests", orjson.dumps(request), key=request_id.encode()
            )
    finally:
        await producer.stop()
    # Read as the worker: its ACLs cover its own output topics.
    predictions = await consume_json(
        url, f"{PREFIX}predictions", until=covers(ids), timeout_s=90, auth=service.auth("worker")
    )
    assert covers(ids)(predictions), f"{len(predictions)} predictions read"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{worker.base_url}/ready") as resp:
            ready = await resp.text()
            assert resp.status == 200, ready
    # The password is not in the worker's answers or its log, nor in the broker's log.
    for text in (ready, worker.log_path.read_text(errors="replace"), _broker_log(service)):
        for password in passwords.values():
            assert password not in text


async def test_a_producer_without_the_write_acl_is_refused_for_deployments(
    broker_kind: str, cluster: tuple[KafkaClusterService, str], worker: WorkerProcess
) -> None:
    service, url = cluster
    record = {
        "model": "credit-risk",
        "champion_version": "2",
        "generation": 2**62,
        "actor": "mallory",
    }
    producer = new_producer(url, auth=service.auth("client"), request_timeout_ms=10_000)
    await producer.start()
    try:
        # The same principal may write requests (its ACL) ...
        metadata = await producer.send_and_wait(f"{PREFIX}requests", b"{}", key=b"k")
        assert metadata.offset >= 0
        # ... and the broker itself refuses its control record.
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(
                producer.send_and_wait(
                    f"{PREFIX}deployments", orjson.dumps(record), key=b"credit-risk"
                ),
                REFUSAL_BOUND_S,
            )
    finally:
        await producer.stop()


async def test_a_wrong_password_is_refused_by_name_and_bounded(
    broker_kind: str,
    cluster: tuple[KafkaClusterService, str],
    backing_services: ServiceAddresses,
    models_dir: Path,
    tmp_path: Path,
) -> None:
    _, url = cluster
    wrong = "not-the-password-" + secrets.token_urlsafe(8)
    auth = KafkaAuth("SASL_PLAINTEXT", "SCRAM-SHA-512", "worker", wrong)
    began = time.monotonic()
    with pytest.raises(KafkaAuthError, match="'worker'") as caught:
        await check_login(bootstrap_servers(url), auth)
    assert time.monotonic() - began < REFUSAL_BOUND_S
    assert wrong not in str(caught.value)
    # A worker with that password stops at start with the reason, without printing it.
    settings = Settings(
        kafka_url=url,
        redis_url=backing_services.redis_url,
        postgres_dsn=backing_services.postgres_dsn,
        models_dir=models_dir,
        state_dir=tmp_path,
        app_id=APP_ID,
        topic_prefix=PREFIX,
        web_port=free_port(),
        kafka_security="SASL_PLAINTEXT",
        kafka_username="worker",
        kafka_password=wrong,
    )
    process = WorkerProcess(settings, tmp_path / "worker.log")
    process.start()
    try:
        deadline = time.monotonic() + 60.0
        while process.process is not None and process.process.poll() is None:
            assert time.monotonic() < deadline, "the worker did not stop:\n" + process.log_tail()
            await asyncio.sleep(0.2)
    finally:
        process.stop()
    log = process.log_path.read_text(errors="replace")
    assert "refused the login SASL_PLAINTEXT SCRAM-SHA-512 as 'worker'" in log, process.log_tail()
    assert wrong not in log


async def test_an_unknown_user_gets_no_bootstrap(
    broker_kind: str, cluster: tuple[KafkaClusterService, str]
) -> None:
    # aiokafka's own client, for comparison: the refusal surfaces only as a connection error.
    _, url = cluster
    producer = new_producer(
        url, auth=KafkaAuth("SASL_PLAINTEXT", "SCRAM-SHA-512", "nobody", "whatever-password")
    )
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(producer.start(), REFUSAL_BOUND_S)
    await producer.stop()


def _broker_log(service: KafkaClusterService) -> str:
    return service.log_path.read_text(errors="replace")
