"""Forged control records, produced with aiokafka straight to the topics, change nothing.

A live worker (every agent) on the real broker: records on ``deployments`` and
``retrain`` without the right authenticator, keyed by another model, signed for another
topic, with a generation at the top of its range, or for models not in the registry are
dead-lettered (kind, field, original bytes) and leave the deployment, the audit trail,
the registry and the ``/metrics`` series as they were. An operator clears a ghost
deployment with ``DELETE /v1/deployments/{model}``, and it stays cleared across a
restart. A retraining does not replace a challenger that a person deployed unasked.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.settings import AGENTS, bootstrap_servers
from phoenix_stream.streaming.topics import app_topic_specs
from phoenix_stream.testing import consume_json, metric_reaches, metric_value
from phoenix_stream.tools.worker_process import WorkerProcess, settings_env

TOKEN = "control-test-token"
MODEL = "credit-risk"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
FORGED = 30  # new model names per topic, as an attacker would make them
TIMEOUT_S = 90.0


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = TIMEOUT_S) -> bool:
    """Poll ``check`` until true (or the timeout); whether it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def http(method: str, url: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.request(method, url, data=data, headers=headers) as response,
    ):
        return response.status, orjson.loads(await response.read())


async def series(base_url: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every series of ``/metrics`` as (family, labels): a histogram's buckets, sum and
    count, or a counter's total and created time, are one series of its family."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{base_url}/metrics") as response,
    ):
        text = await response.text()
    return {
        (family.name, tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le")))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def deployment(model: str, generation: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "champion": "2",
        "strategy": "single",
        "share": 1.0,
        "generation": generation,
        "actor": "mallory",
        "reason": "forged",
        "decided_at": time.time(),
        **extra,
    }


def retrain(model: str) -> dict[str, Any]:
    return {"model": model, "reason": "forged", "requested_at": time.time(), "actor": "mallory"}


@pytest.fixture(scope="module")
async def worker(worker_factory: Any) -> WorkerProcess:
    """Every agent; retraining finds too little data (it learns from the last 5 s)."""
    started: WorkerProcess = await worker_factory.start(
        agents=AGENTS, admin_token=TOKEN, challenger_version="", retrain_window_s=5.0
    )
    return started


@pytest.mark.brokers("tansu", "kafka")
async def test_forged_control_records_change_nothing_and_are_dead_lettered(
    worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    settings = worker.settings
    auth = ControlAuth(settings.control_key)
    deployments, retrains = settings.topic("deployments"), settings.topic("retrain")
    run = uuid.uuid4().hex[:6]
    versions_before = ModelRegistry(settings.models_dir).versions(MODEL)
    before = await series(worker.base_url)
    top = 2**63 - 1
    sent: dict[str, list[bytes]] = {"unauthenticated_control": [], "invalid_deployment": []}
    sent["invalid_drift_counts"] = []

    async def send(topic: str, key: str, value: bytes, kind: str | None) -> None:
        await producer.send_and_wait(topic, value, key=key.encode())
        if kind is not None:
            sent[kind].append(value)

    # The takeover: unsigned, at the top of the range, share 1.0.
    await send(deployments, MODEL, orjson.dumps(deployment(MODEL, top)), "unauthenticated_control")
    # Signed, but keyed by another model than the one it names.
    signed = auth.seal(deployments, deployment(MODEL, int(time.time() * 1000) + 10))
    await send(deployments, f"not-{MODEL}", signed, "unauthenticated_control")
    # Signed with another key; a retrain request's signed bytes replayed as a deployment.
    other = ControlAuth("f" * 64).seal(deployments, deployment(MODEL, top))
    await send(deployments, MODEL, other, "unauthenticated_control")
    replayed = auth.seal(retrains, deployment(MODEL, int(time.time() * 1000) + 20))
    await send(deployments, MODEL, replayed, "unauthenticated_control")
    # Authentic (a key holder's bug), but a generation no publisher could have made.
    await send(
        deployments, MODEL, auth.seal(deployments, deployment(MODEL, top)), "invalid_deployment"
    )
    for i in range(FORGED):  # new names: unsigned, and signed for models not registered
        name = f"forged-d-{run}-{i}"
        await send(
            deployments, name, orjson.dumps(deployment(name, top)), "unauthenticated_control"
        )
        ghost = f"ghost-d-{run}-{i}"
        await send(
            deployments, ghost, auth.seal(deployments, deployment(ghost, 5)), "invalid_deployment"
        )

    await send(retrains, MODEL, orjson.dumps(retrain(MODEL)), "unauthenticated_control")
    await send(retrains, MODEL, auth.seal(deployments, retrain(MODEL)), "unauthenticated_control")
    await send(
        retrains, f"not-{MODEL}", auth.seal(retrains, retrain(MODEL)), "unauthenticated_control"
    )
    for i in range(FORGED):
        name = f"forged-r-{run}-{i}"
        await send(retrains, name, orjson.dumps(retrain(name)), "unauthenticated_control")
        ghost = f"ghost-r-{run}-{i}"  # authentic, for no registered model: a job's outcome
        await send(retrains, ghost, auth.seal(retrains, retrain(ghost)), None)
    for i in range(FORGED):  # drift counts carry no authenticator: the registry decides
        name = f"forged-c-{run}-{i}"
        counts = {"model": name, "version": "1", "counts": [[1, 2], [3, 4]], "n": 2,
                  "at": time.time()}  # fmt: skip
        await send(
            settings.topic("drift-counts"),
            f"{name}/1",
            orjson.dumps(counts),
            "invalid_drift_counts",
        )

    # Sentinels after the forged records on the one-partition topics: a person's change
    # (the generation 2^63-1 did not lock the model) and a person's retrain request.
    status, body = await http(
        "PUT",
        f"{worker.base_url}/v1/deployments/{MODEL}",
        {"champion": "1", "reason": run},
        **ADMIN,
    )
    assert status == 200, body
    generation = body["deployment"]["generation"]
    assert body["serving_here"] is True and generation < top
    jobs = await metric_value(
        worker.base_url, "phoenix_retrain_jobs_total", model=MODEL, outcome="too_little_data"
    )
    status, body = await http("POST", f"{worker.base_url}/v1/models/{MODEL}/retrain", {}, **ADMIN)
    assert status == 202, body
    assert await metric_reaches(
        worker.base_url, "phoenix_retrain_jobs_total", jobs + 1, TIMEOUT_S,
        model=MODEL, outcome="too_little_data",
    ) == jobs + 1, worker.log_tail()  # fmt: skip

    # Every forged record is dead-lettered with its kind, field and original bytes.
    wanted = Counter({kind: len(values) for kind, values in sent.items()})

    def ours(letters: list[Any]) -> Counter[str]:
        originals = {v for values in sent.values() for v in values}
        return Counter(
            letter["error_kind"]
            for letter in letters
            if base64.b64decode(letter["original_value"]) in originals
        )

    letters = await consume_json(
        settings.kafka_url, settings.topic("dead-letters"), timeout_s=TIMEOUT_S,
        until=lambda got: ours(got) >= wanted,
    )  # fmt: skip
    assert ours(letters) == wanted, worker.log_tail()
    by_value = {base64.b64decode(d["original_value"]): d for d in letters}
    takeover = by_value[sent["unauthenticated_control"][0]]
    assert (takeover["source_topic"], takeover["field"]) == (deployments, "auth")
    assert by_value[signed]["field"] == "key"
    assert by_value[sent["invalid_deployment"][0]]["field"] == "generation"
    assert by_value[sent["invalid_drift_counts"][0]]["field"] == "model"

    # Nothing changed: the person's deployment serves, the audit trail has no forgery,
    # no version was trained, no model name was added, /ready holds.
    status, body = await http("GET", f"{worker.base_url}/v1/deployments/{MODEL}")
    assert status == 200
    serving = body["serving"]
    assert (serving["generation"], serving["champion"], serving["actor"]) == (
        generation, "1", "admin"
    )  # fmt: skip
    assert all(h["actor"] != "mallory" for h in body["history"] or []), body["history"]
    status, listing = await http("GET", f"{worker.base_url}/v1/deployments")
    assert {d["model"] for d in listing["deployments"]} == set(
        ModelRegistry(settings.models_dir).names()
    )
    assert ModelRegistry(settings.models_dir).versions(MODEL) == versions_before
    assert (await http("GET", f"{worker.base_url}/ready"))[0] == 200

    # Bounded series: no forged name labels a series; the few new series are per kind.
    after = await series(worker.base_url)
    named = [s for s in after if any(run in value for _, value in s[1])]
    assert named == [], named
    # The consumer-lag gauges are one per partition of the worker's own topics (bounded by
    # the app, not by input); on a busy machine they appear when the first lag sample
    # comes, which may be during this test.
    own_topics = {spec.name for spec in app_topic_specs(settings).values()}
    grown = {
        s
        for s in after - before
        if not (s[0] == "phoenix_consumer_lag_records" and dict(s[1])["topic"] in own_topics)
    }
    assert len(grown) <= 20, sorted(grown)
    print(f"/metrics series: {len(before)} before, {len(after)} after {sum(wanted.values())} "
          f"forged records; new: {sorted(grown)}")  # fmt: skip


async def test_a_retraining_keeps_the_challenger_a_person_deployed(
    worker: WorkerProcess,
) -> None:
    base = worker.base_url
    change = {"champion": "1", "challenger": "2", "strategy": "shadow", "actor": "alice"}
    status, body = await http("PUT", f"{base}/v1/deployments/{MODEL}", change, **ADMIN)
    assert status == 200, body
    assert (body["deployment"]["actor"], body["deployment"]["challenger_by"]) == (
        "admin:alice", "admin:alice"
    )  # fmt: skip

    async def outcome_after(request: dict[str, Any], outcome: str) -> float:
        before = await metric_value(
            base, "phoenix_retrain_jobs_total", model=MODEL, outcome=outcome
        )
        status, answer = await http("POST", f"{base}/v1/models/{MODEL}/retrain", request, **ADMIN)
        assert status == 202, answer
        return (
            await metric_reaches(
                base,
                "phoenix_retrain_jobs_total",
                before + 1,
                TIMEOUT_S,
                model=MODEL,
                outcome=outcome,
            )
            - before
        )

    assert await outcome_after({"reason": "by hand"}, "refused") == 1, worker.log_tail()
    # Said explicitly (only the admin endpoint can): the job goes on (too little data here).
    asked = {"reason": "replace it", "replace_challenger": True}
    assert await outcome_after(asked, "too_little_data") == 1, worker.log_tail()
    status, body = await http("GET", f"{base}/v1/deployments/{MODEL}")
    assert (
        body["serving"]["challenger"] == "2" and body["serving"]["challenger_by"] == "admin:alice"
    )


async def _until_tombstone(kafka_url: str, topic: str, key: bytes) -> list[Any]:
    """The values of ``topic``'s records keyed ``key``, read until a tombstone (None)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(kafka_url), enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)  # deployments has one partition
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        found: list[Any] = []
        deadline = time.monotonic() + TIMEOUT_S
        while None not in found and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(m.value for m in messages if m.key == key)
        return found
    finally:
        await consumer.stop()


@pytest.mark.brokers("tansu", "kafka")
async def test_a_ghost_deployment_is_refused_and_cleared_across_a_restart(
    worker_factory: Any, producer: AIOKafkaProducer
) -> None:
    first: WorkerProcess = await worker_factory.start(admin_token=TOKEN, challenger_version="")
    settings = first.settings
    topic = settings.topic("deployments")
    ghost = f"ghost-{uuid.uuid4().hex[:6]}"
    # Signed with the workers' key (as a record written before the registry check was):
    # a model that is not in the registry never serves, never keeps /ready at 503.
    record = ControlAuth(settings.control_key).seal(topic, deployment(ghost, 5, champion="1"))
    await producer.send_and_wait(topic, record, key=ghost.encode())
    status, body = await http(
        "PUT", f"{first.base_url}/v1/deployments/{MODEL}", {"champion": "1"}, **ADMIN
    )
    assert status == 200 and body["serving_here"], body  # read past the ghost
    status, ready = await http("GET", f"{first.base_url}/ready")
    assert status == 200, ready
    listed = {
        d["model"]
        for d in (await http("GET", f"{first.base_url}/v1/deployments"))[1]["deployments"]
    }
    assert ghost not in listed

    url = f"{first.base_url}/v1/deployments/{ghost}"
    assert (await http("DELETE", url))[0] == 401
    status, body = await http("DELETE", f"{first.base_url}/v1/deployments/{MODEL}", **ADMIN)
    assert (status, body["field"]) == (409, "model")  # a registered model is deployed instead
    # The operator's command (through the admin endpoint) writes the tombstone.
    env = {**os.environ, **settings_env(settings), "PHOENIX_ADMIN_URL": first.base_url}
    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "phoenix_stream", "clear-deployment", ghost],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert cli.returncode == 0 and "cleared" in cli.stdout, cli.stderr
    assert await _until_tombstone(settings.kafka_url, topic, ghost.encode()) == [record, None]

    # A restarted worker (same topics) reads the tombstone: nothing to serve, ready.
    first.stop()
    same = {"app_id": settings.app_id, "topic_prefix": settings.topic_prefix}
    second: WorkerProcess = await worker_factory.start(
        admin_token=TOKEN, challenger_version="", **same
    )
    status, ready = await http("GET", f"{second.base_url}/ready")
    assert status == 200, ready
    status, body = await http("GET", f"{second.base_url}/v1/deployments/{ghost}")
    assert status == 404
    status, body = await http("GET", f"{second.base_url}/v1/deployments/{MODEL}")
    assert body["serving"]["champion"] == "1" and body["serving"]["actor"] == "admin"
