"""Deployments live: two workers and the HTTP view follow a change without a restart.

Real workers on the embedded broker, Redis and PostgreSQL; the admin API with its token.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.serving.router import bucket
from phoenix_stream.settings import bootstrap_servers
from phoenix_stream.testing import consume_json, covers, metric_value
from phoenix_stream.tools.worker_process import WorkerProcess

TOKEN = "s3cret-token"
MODEL = "credit-risk"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> bool:
    """Poll ``check`` until true (or the timeout); whether it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def http(method: str, url: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.request(method, url, data=orjson.dumps(body), headers=headers) as response,
    ):
        return response.status, orjson.loads(await response.read())


async def serving_generation(worker: WorkerProcess) -> int:
    status, body = await http("GET", f"{worker.base_url}/v1/deployments/{MODEL}")
    return int(body["serving"]["generation"]) if status == 200 else -1


@pytest.fixture(scope="module")
def registry(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models plus version 3, whose ONNX file is corrupt (it cannot load)."""
    target = tmp_path_factory.mktemp("deploy-models")
    # Versions 1 and 2 only: a retraining in another module may have registered more.
    for version in ("1", "2"):
        shutil.copytree(models_dir / MODEL / version, target / MODEL / version)
    broken = target / MODEL / "3"
    shutil.copytree(target / MODEL / "2", broken)
    manifest = orjson.loads((broken / "manifest.json").read_bytes())
    manifest["version"] = "3"
    (broken / "manifest.json").write_bytes(orjson.dumps(manifest))
    (broken / "model.onnx").write_bytes(b"not an onnx file")
    return target


@pytest.fixture(scope="module")
async def workers(worker_factory: Any, registry: Path) -> list[WorkerProcess]:
    """Two workers of one group (single-version start: the settings have no challenger)."""
    first: WorkerProcess = await worker_factory.start(
        models_dir=registry, admin_token=TOKEN, challenger_version=""
    )
    same = {"app_id": first.settings.app_id, "topic_prefix": first.settings.topic_prefix}
    second: WorkerProcess = await worker_factory.start(
        models_dir=registry, admin_token=TOKEN, challenger_version="", **same
    )
    return [first, second]


async def deploy(worker: WorkerProcess, **change: Any) -> dict[str, Any]:
    status, body = await http("PUT", f"{worker.base_url}/v1/deployments/{MODEL}", change, **AUTH)
    assert status == 200, body
    return dict(body)


async def test_admin_endpoints_refuse_without_the_token(
    workers: list[WorkerProcess], worker_factory: Any, registry: Path
) -> None:
    url = f"{workers[0].base_url}/v1/deployments/{MODEL}"
    change = {"champion": "2"}
    assert (await http("PUT", url, change))[0] == 401
    assert (await http("PUT", url, change, Authorization="Bearer wrong"))[0] == 403
    assert (await http("PUT", url, change, Authorization=TOKEN))[0] == 401  # no scheme
    assert (await http("POST", url + "/promote", {}))[0] == 401
    assert (await http("POST", url + "/rollback", {}, Authorization="Bearer x"))[0] == 403
    status, body = await http("PUT", url, {"champion": "9"}, **AUTH)
    assert (status, body["field"]) == (422, "champion")
    status, body = await http("PUT", url, {"champion": "1", "colour": 1}, **AUTH)
    assert (status, body["field"]) == (422, "colour")
    # A worker with no token configured: the endpoints are off, whatever is sent.
    closed: WorkerProcess = await worker_factory.start(models_dir=registry)
    status, body = await http("PUT", f"{closed.base_url}/v1/deployments/{MODEL}", change, **AUTH)
    assert status == 403 and "off" in body["error"]
    # Feedback has its own credential: with no feedback token configured it is off, and
    # the admin token does not open it.
    label = {"request_id": "r1", "label": 1}
    for base in (workers[0].base_url, closed.base_url):
        status, body = await http("POST", f"{base}/v1/feedback", label, **AUTH)
        assert status == 403 and "PHOENIX_FEEDBACK_TOKENS is not set" in body["error"], body


@pytest.mark.brokers("tansu", "kafka")
async def test_a_change_reaches_both_workers_and_the_http_view(
    workers: list[WorkerProcess], producer: AIOKafkaProducer
) -> None:
    first, second = workers
    answer = await deploy(first, champion="1", challenger="2", strategy="shadow", reason="try 2")
    generation = answer["deployment"]["generation"]
    assert answer["serving_here"] is True
    started = time.monotonic()
    assert await until(lambda: _at(second, generation))
    propagation_ms = (time.monotonic() - started) * 1000
    assert propagation_ms < 30_000
    # The HTTP view of the other worker serves the champion and shadows the challenger.
    status, body = await http(
        "POST", f"{second.base_url}/v1/predict", {"entity_id": "c000007", "request_id": "h1"}
    )
    assert status == 200 and (body["variant"], body["version"]) == ("champion", "1")
    # Kafka requests: answers from the champion only, shadow answers on their own topic.
    settings = first.settings
    run = uuid.uuid4().hex[:8]
    ids = [f"{run}-{i}" for i in range(200)]
    for i, request_id in enumerate(ids):
        value = {"request_id": request_id, "entity_id": f"c{i:06d}"}
        await producer.send(settings.topic("requests"), orjson.dumps(value), key=str(i).encode())
    await producer.flush()
    served = await consume_json(
        settings.kafka_url, settings.topic("predictions"), until=covers(ids)
    )
    ours = [p for p in served if str(p["request_id"]).startswith(run)]
    assert {(p["variant"], p["version"]) for p in ours} == {("champion", "1")}
    shadow = await consume_json(
        settings.kafka_url, settings.topic("shadow-predictions"), until=covers(ids)
    )
    assert {(p["variant"], p["version"]) for p in shadow if p["request_id"] in ids} == {
        ("challenger", "2")
    }
    history: list[dict[str, Any]] = []

    async def recorded() -> bool:  # the audit trail, written by the deployments agent
        status, body = await http("GET", f"{second.base_url}/v1/deployments")
        assert status == 200 and body["history_error"] is None, body
        history[:] = [h for h in body["history"] if h["generation"] == generation]
        return bool(history)

    # Written by the one owner of the deployments partition: on a busy machine a Kafka
    # rebalance between the two workers can hold it for longer than the 30 s above.
    assert await until(recorded, timeout_s=120.0), second.log_tail()
    assert history[0]["actor"] == "admin" and history[0]["reason"] == "try 2"


async def _at(worker: WorkerProcess, generation: int) -> bool:
    return await serving_generation(worker) >= generation


async def test_the_challenger_share_is_as_configured_and_sticky(
    workers: list[WorkerProcess], producer: AIOKafkaProducer
) -> None:
    first, second = workers
    answer = await deploy(first, champion="1", challenger="2", strategy="ab", share=0.3)
    assert await until(lambda: _at(second, answer["deployment"]["generation"]))
    settings = first.settings
    run = uuid.uuid4().hex[:8]
    entities = [f"s{run}{i}" for i in range(3000)]
    ids = [f"{run}-{i}" for i in range(len(entities))]
    for request_id, entity in zip(ids, entities, strict=True):
        value = {"request_id": request_id, "entity_id": entity}
        await producer.send(settings.topic("requests"), orjson.dumps(value), key=entity.encode())
    await producer.flush()
    served = await consume_json(
        settings.kafka_url, settings.topic("predictions"), until=covers(ids)
    )
    variant = {str(p["entity_id"]): p["variant"] for p in served if p["request_id"] in set(ids)}
    share = sum(v == "challenger" for v in variant.values()) / len(variant)
    # 3,000 entities: a binomial standard deviation of 0.008; 4 of them is the tolerance.
    assert abs(share - 0.3) < 0.035
    # Each entity where the router puts it, on either worker: sticky and the same everywhere.
    assert all((v == "challenger") == (bucket(MODEL, e) < 0.3) for e, v in variant.items())


async def test_hot_swaps_under_steady_traffic_fail_no_request(
    workers: list[WorkerProcess], producer: AIOKafkaProducer
) -> None:
    first, second = workers
    settings = first.settings
    run = uuid.uuid4().hex[:8]
    ids: list[str] = []
    changes = [
        {"champion": "2"},
        {"champion": "1", "challenger": "2", "strategy": "canary", "share": 0.5},
        {"champion": "1"},
    ]
    last = 0

    async def traffic(n: int) -> None:
        for _ in range(n):
            i = len(ids)
            ids.append(f"{run}-{i}")
            value = {"request_id": ids[-1], "entity_id": f"c{i % 2000:06d}"}
            await producer.send(settings.topic("requests"), orjson.dumps(value), key=b"%d" % i)
            if i % 20 == 0:
                await producer.flush()

    for change in changes:
        sender = asyncio.create_task(traffic(300))
        answer = await deploy(first if len(ids) % 2 else second, **change, reason="swap")
        last = answer["deployment"]["generation"]
        await sender
    await producer.flush()
    assert await until(lambda: _at(first, last)) and await until(lambda: _at(second, last))
    served = await consume_json(
        settings.kafka_url, settings.topic("predictions"), until=covers(ids)
    )
    assert set(ids) <= {str(p["request_id"]) for p in served}
    dead = await consume_json(
        settings.kafka_url,
        settings.topic("dead-letters"),
        until=lambda letters: True,
        timeout_s=5,
    )
    assert not [d for d in dead if d.get("error_kind") == "model_error"]


async def test_a_version_that_cannot_load_leaves_the_previous_one_serving(
    workers: list[WorkerProcess],
) -> None:
    first, second = workers
    good = await deploy(first, champion="1")
    assert await until(lambda: _at(second, good["deployment"]["generation"]))
    answer = await deploy(first, champion="1", challenger="3", strategy="ab", share=0.5)
    assert answer["serving_here"] is False
    assert "generation" in str(answer["pending_reason"])
    status, body = await http("GET", f"{second.base_url}/ready")

    async def second_says_why() -> bool:
        status, body = await http("GET", f"{second.base_url}/ready")
        return status == 503 and f"deployment {MODEL}" in body["failing"]

    assert await until(second_says_why)
    status, body = await http("GET", f"{second.base_url}/v1/deployments/{MODEL}")
    assert body["serving"]["generation"] == good["deployment"]["generation"]
    assert body["pending"]["challenger"] == "3"
    for worker in workers:  # the previous deployment answers every request
        for i in range(20):
            status, body = await http(
                "POST", f"{worker.base_url}/v1/predict", {"entity_id": f"c{i:06d}"}
            )
            assert status == 200 and body["version"] == "1", body
    assert await metric_value(second.base_url, "phoenix_deployment_pending", model=MODEL) == 1.0
    recovered = await deploy(first, champion="1", reason="back to one version")
    assert await until(lambda: _at(second, recovered["deployment"]["generation"]))

    async def second_ready() -> bool:
        return (await http("GET", f"{second.base_url}/ready"))[0] == 200

    assert await until(second_ready)


async def test_a_replayed_older_record_changes_nothing(
    workers: list[WorkerProcess], services: ServiceAddresses
) -> None:
    first, second = workers
    current = await deploy(first, champion="2", reason="current")
    generation = current["deployment"]["generation"]
    assert await until(lambda: _at(second, generation))
    ignored_before = await metric_value(
        second.base_url, "phoenix_deployments_ignored_total", model=MODEL
    )
    stale = {**current["deployment"], "generation": generation - 1, "champion": "1"}
    topic = first.settings.topic("deployments")
    # Authentic (signed with the workers' key), only older: a replay, not a forgery.
    signed = ControlAuth(first.settings.control_key).seal(topic, stale)
    client = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(services.kafka_url))
    await client.start()
    try:
        await client.send_and_wait(topic, signed, key=MODEL.encode())
    finally:
        await client.stop()

    async def ignored() -> bool:
        now = await metric_value(second.base_url, "phoenix_deployments_ignored_total", model=MODEL)
        return now > ignored_before

    assert await until(ignored)
    status, body = await http("GET", f"{second.base_url}/v1/deployments/{MODEL}")
    assert status == 200
    assert body["serving"]["generation"] == generation and body["serving"]["champion"] == "2"
