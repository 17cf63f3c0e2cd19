"""The HTTP view of a real worker: answers, errors, readiness, metrics, and outages."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from phoenix_stream.embedded import ServiceAddresses, start_services, stop_services
from phoenix_stream.testing import consume_json, covers
from phoenix_stream.tools.worker_process import WorkerProcess

LOAN = {"credit_amount": 12.5, "duration_months": 24.0, "interest_rate": 7.9}


@pytest.fixture(scope="module")
async def worker(worker_factory: Any) -> WorkerProcess:
    started: WorkerProcess = await worker_factory.start()
    return started


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, url, **kwargs) as response:
        return response.status, await response.json()


async def test_predict_answers_and_records_on_kafka(
    worker: WorkerProcess, http: aiohttp.ClientSession
) -> None:
    status, body = await call(
        http,
        "POST",
        f"{worker.base_url}/v1/predict",
        json={"request_id": "http-1", "entity_id": "c000042", "features": LOAN},
    )
    assert status == 200, body
    assert set(body) == {
        "request_id",
        "entity_id",
        "model",
        "version",
        "variant",
        "score",
        "label",
        "latency_ms",
        "degraded",
        "defaults_used",
    }
    assert body["request_id"] == "http-1" and body["model"] == "credit-risk"
    assert body["defaults_used"] == [] and body["degraded"] is False
    assert body["label"] == int(body["score"] >= 0.5) and type(body["label"]) is int
    # The same entity is routed the same way every time (sticky).
    again = [
        await call(
            http,
            "POST",
            f"{worker.base_url}/v1/predict",
            json={"entity_id": "c000042", "features": LOAN},
        )
        for _ in range(3)
    ]
    assert {(b["variant"], b["version"], b["score"]) for _, b in again} == {
        (body["variant"], body["version"], body["score"])
    }
    # No request_id given: one is made up and returned.
    assert all(len(b["request_id"]) == 32 for _, b in again)

    settings = worker.settings
    # Each answer came after its prediction was delivered, all on one entity's partition:
    # once the last one is read, any second copy of http-1 before it is read too.
    answered = {"http-1", *(b["request_id"] for _, b in again)}
    predictions = await consume_json(
        settings.kafka_url, settings.topic("predictions"), until=covers(answered)
    )
    mine = [p for p in predictions if p["request_id"] == "http-1"]
    assert len(mine) == 1 and mine[0]["source"] == "http"
    assert mine[0]["score"] == body["score"]


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        (b"{not json", 400, None),
        (b'{"features": {}}', 422, "entity_id"),
        (
            b'{"entity_id": "c1", "features": {"credit_amount": "big"}}',
            422,
            "features.credit_amount",
        ),
        (b'{"entity_id": "c1", "features": {"credit_amount": NaN}}', 422, "features.credit_amount"),
        (b'{"entity_id": "c1", "features": {"shoe_size": 44}}', 422, "features.shoe_size"),
        (b'{"entity_id": "c1", "model": "no-such-model"}', 404, "model"),
        (b'{"entity_id": "c1", "colour": "red"}', 422, "colour"),
        # Found crashing the worker or answering 500 before decoding was made total:
        (
            b'{"entity_id": "c1", "features": {"credit_amount": 1' + b"0" * 399 + b"}}",
            422,
            "features.credit_amount",
        ),
        (
            b'{"entity_id": "c1", "features": {"credit_amount": 1e39}}',
            422,
            "features.credit_amount",
        ),
        (b'{"entity_id": "c1", "features": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400, None),
        (b'{"entity_id": "\\ud800"}', 400, None),
        (b'{"entity_id": "\xed\xa0\x80"}', 400, None),
    ],
)
async def test_errors_are_json_and_name_the_field(
    worker: WorkerProcess,
    http: aiohttp.ClientSession,
    payload: bytes,
    status: int,
    field: str | None,
) -> None:
    got, body = await call(
        http,
        "POST",
        f"{worker.base_url}/v1/predict",
        data=payload,
        headers={"content-type": "application/json"},
    )
    assert (got, body["field"]) == (status, field), body
    assert body["error"]


async def test_oversize_body_is_413(worker: WorkerProcess, http: aiohttp.ClientSession) -> None:
    big = b'{"entity_id": "c1", "pad": "' + b"x" * (worker.settings.max_record_bytes + 1) + b'"}'
    status, body = await call(http, "POST", f"{worker.base_url}/v1/predict", data=io.BytesIO(big))
    assert status == 413 and "limit" in body["error"]


async def test_full_queue_is_503_with_retry_after(
    worker_factory: Any, http: aiohttp.ClientSession
) -> None:
    small: WorkerProcess = await worker_factory.start(http_queue_max=1)
    url = f"{small.base_url}/v1/predict"

    async def predict() -> tuple[int, str | None, Any]:
        async with http.post(url, json={"entity_id": "c000042", "features": LOAN}) as response:
            return response.status, response.headers.get("Retry-After"), await response.json()

    # Rounds of concurrent requests until one found the queue full (the first does, as a
    # batch takes milliseconds to score and record while 32 requests arrive).
    refused: list[tuple[int, str | None, Any]] = []
    for _ in range(10):
        answers = await asyncio.gather(*(predict() for _ in range(32)))
        assert {status for status, _, _ in answers} <= {200, 503}, answers
        refused = [answer for answer in answers if answer[0] == 503]
        if refused:
            break
    assert refused
    _, retry_after, body = refused[0]
    assert retry_after == "1" and body["kind"] == "overloaded" and "retry" in body["error"]


async def test_batch_answers_each_item(worker: WorkerProcess, http: aiohttp.ClientSession) -> None:
    items = [
        {"request_id": "b-0", "entity_id": "c000001", "features": LOAN},
        {"request_id": "b-1", "entity_id": 7.5},
        {"request_id": "b-2", "entity_id": "c000002", "model": "nope"},
        {"request_id": "b-3", "entity_id": "c000003"},
    ]
    status, body = await call(
        http, "POST", f"{worker.base_url}/v1/predict/batch", json={"requests": items}
    )
    assert status == 200
    assert [p["request_id"] for p in body["predictions"]] == ["b-0", "b-3"]
    assert body["predictions"][1]["defaults_used"] == list(LOAN)
    assert [(e["index"], e["status"], e["field"]) for e in body["errors"]] == [
        (1, 422, "entity_id"),
        (2, 404, "model"),
    ]
    status, body = await call(http, "POST", f"{worker.base_url}/v1/predict/batch", json=[])
    assert status == 422 and body["field"] == "requests"


async def test_models_health_metrics(worker: WorkerProcess, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", f"{worker.base_url}/v1/models")
    assert status == 200
    [model] = body["models"]
    assert (model["name"], model["champion"], model["challenger"]) == ("credit-risk", "1", "2")
    assert [v["version"] for v in model["versions"]] == ["1", "2"]
    assert model["versions"][0]["metrics"]["roc_auc"] > 0.7
    assert (await call(http, "GET", f"{worker.base_url}/health"))[0] == 200
    # One request of its own: the metrics must count it, whatever ran before here.
    status, _ = await call(
        http, "POST", f"{worker.base_url}/v1/predict", json={"entity_id": "c000042"}
    )
    assert status == 200
    async with http.get(f"{worker.base_url}/metrics") as response:
        text = await response.text()
    assert response.status == 200
    assert 'phoenix_requests_total{source="http"}' in text
    assert "phoenix_predictions_total{" in text


async def test_redis_outage_degrades_and_ready_says_why(
    worker: WorkerProcess,
    http: aiohttp.ClientSession,
    services_state_dir: Path,
    managed_services: frozenset[str],
    services: ServiceAddresses,
) -> None:
    if "redis" not in managed_services:
        pytest.skip("Redis is external (PHOENIX_REDIS_URL): this test stops the embedded one")
    assert (await call(http, "GET", f"{worker.base_url}/ready"))[0] == 200
    await asyncio.to_thread(stop_services, services_state_dir, ["redis"])
    try:
        status, body = await call(http, "GET", f"{worker.base_url}/ready")
        assert status == 503 and set(body["failing"]) == {"redis"}
        started = time.monotonic()
        status, body = await call(
            http,
            "POST",
            f"{worker.base_url}/v1/predict",
            json={"entity_id": "c000042", "features": LOAN},
        )
        assert time.monotonic() - started < 3.0  # degraded, not hung
        assert status == 200 and body["degraded"] is True
        assert "age" in body["defaults_used"] and "credit_amount" not in body["defaults_used"]
    finally:
        await asyncio.to_thread(start_services, services_state_dir, ["redis"])
    deadline = time.monotonic() + 15
    status = 0
    while time.monotonic() < deadline and status != 200:
        status, _ = await call(http, "GET", f"{worker.base_url}/ready")
        await asyncio.sleep(0.2)
    assert status == 200
    status, body = await call(
        http,
        "POST",
        f"{worker.base_url}/v1/predict",
        json={"entity_id": "c000042", "features": LOAN},
    )
    assert status == 200 and body["degraded"] is False and body["defaults_used"] == []
