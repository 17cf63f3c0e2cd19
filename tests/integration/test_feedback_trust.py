"""Who may label: feedback tokens, labels only for stored predictions, bounded orphans,
trusted sources only in evaluation and promotion, and text PostgreSQL can store.

Each test runs real workers on the embedded services (broker, Redis, PostgreSQL). The
attack of issue 12, shortened: predictions labelled the opposite of the champion's answer
by someone without a feedback token (over HTTP: refused; on the Kafka topic: stored as
``kafka``, not trusted) leave the rollout where it is, while the same labels given with a
feedback token move it.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.testing import POLL_S, consume_json, metric_reaches, metric_value
from phoenix_stream.testing import prediction_rows as stored_predictions
from phoenix_stream.tools.worker_process import WorkerProcess

ADMIN = "admin-token-of-the-trust-tests"
ANY_MODEL = "feedback-token-any-model-0001"
CREDIT_RISK = "feedback-token-credit-risk-02"
OTHER_MODEL = "feedback-token-other-model-03"
TOKENS = f"{ANY_MODEL},credit-risk={CREDIT_RISK},other-model={OTHER_MODEL}"
ORPHAN_MAX = 40
ORPHAN_TTL_S = 5.0  # the sweep runs every 1.25 s
MODEL = "credit-risk"


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def call(
    method: str, url: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    """One HTTP call with a JSON body (bytes sent as they are); status and decoded JSON."""
    raw = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http,
        http.request(method, url, data=raw, headers=bearer(token)) as response,
    ):
        return response.status, orjson.loads(await response.read())


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    """Poll ``check`` until it holds or ``timeout_s`` passed; whether it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_S)


async def fetchval(dsn: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def predict_on_kafka(
    producer: AIOKafkaProducer, worker: WorkerProcess, dsn: str, ids: list[str]
) -> dict[str, Any]:
    """Requests for ``ids`` in batch records of 100; their stored predictions by id."""
    topic = worker.settings.topic("requests")
    for start in range(0, len(ids), 100):
        batch = [
            {"request_id": r, "entity_id": f"c{(start + n) % 2000:06d}"}
            for n, r in enumerate(ids[start : start + 100])
        ]
        await producer.send(topic, orjson.dumps(batch), key=str(start).encode())
    await producer.flush()
    prefix = ids[0].rsplit("-", 1)[0] + "-"
    wanted = set(ids)
    rows = await stored_predictions(
        dsn, prefix, until=lambda rs: wanted <= {r["request_id"] for r in rs}, timeout_s=120
    )
    found = {r["request_id"]: r for r in rows}
    assert wanted <= set(found), f"{len(wanted - set(found))} predictions not stored"
    return found


@pytest.fixture(scope="module")
async def worker(worker_factory: Any) -> WorkerProcess:
    started: WorkerProcess = await worker_factory.start(
        admin_token=ADMIN,
        feedback_tokens=TOKENS,
        feedback_orphan_max=ORPHAN_MAX,
        feedback_orphan_ttl_s=ORPHAN_TTL_S,
        challenger_version="",
    )
    return started


async def test_feedback_needs_its_own_token_and_a_stored_prediction(
    worker: WorkerProcess, producer: AIOKafkaProducer, services: ServiceAddresses
) -> None:
    base, dsn = worker.base_url, services.postgres_dsn
    run = uuid.uuid4().hex[:8]
    ids = [f"{run}-{i}" for i in range(5)]
    await predict_on_kafka(producer, worker, dsn, ids)
    url = f"{base}/v1/feedback"
    label = {"request_id": ids[0], "label": 1}

    for token, status in ((None, 401), ("not-a-token-at-all", 403), (ADMIN, 403)):
        got, body = await call("POST", url, label, token)
        assert (got, body["field"]) == (status, "Authorization"), (token, body)
    # Not a bearer token: 401 naming the header.
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=orjson.dumps(label), headers={"Authorization": "Basic eA=="}) as r,
    ):
        assert (r.status, (await r.json())["field"]) == (401, "Authorization")

    # A feedback token cannot deploy, retrain or promote.
    change = {"champion": "1", "reason": "a labeller tries"}
    got, body = await call("PUT", f"{base}/v1/deployments/{MODEL}", change, ANY_MODEL)
    assert (got, body["field"]) == (403, "Authorization")
    got, body = await call("POST", f"{base}/v1/models/{MODEL}/retrain", {}, CREDIT_RISK)
    assert (got, body["field"]) == (403, "Authorization")

    # Labels attach only to stored predictions, of a model the token may label.
    got, body = await call("POST", url, {"request_id": f"{run}-never", "label": 1}, ANY_MODEL)
    assert (got, body["field"]) == (404, "request_id")
    got, body = await call("POST", url, label, OTHER_MODEL)
    assert (got, body["field"]) == (403, "request_id")
    assert await call("POST", url, label, CREDIT_RISK) == (202, {"accepted": 1, "errors": []})
    mixed = [
        {"request_id": ids[1], "label": 0},
        {"request_id": f"{run}-ghost", "label": 1},
        {"request_id": ids[2], "label": 3},
        {"request_id": ids[0], "label": 1},  # a repeat: accepted, the first label stays
    ]
    got, body = await call("POST", url, mixed, ANY_MODEL)
    assert (got, body["accepted"]) == (202, 2)
    assert [(e["index"], e["status"], e["field"]) for e in body["errors"]] == [
        (1, 404, "request_id"),
        (2, 422, "label"),
    ]
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT request_id, label, source, orphan FROM feedback "
            "WHERE starts_with(request_id, $1) ORDER BY request_id",
            f"{run}-",
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        (ids[0], 1, "http:feedback-2", False),  # credit-risk=..., the second entry
        (ids[1], 0, "http:feedback-1", False),
    ]


async def test_kafka_orphans_are_bounded_overflow_dead_lettered_and_swept(
    worker: WorkerProcess, producer: AIOKafkaProducer, services: ServiceAddresses
) -> None:
    base, dsn, settings = worker.base_url, services.postgres_dsn, worker.settings
    orphans_held = "SELECT count(*) FROM feedback WHERE orphan"

    async def none_held() -> bool:
        return int(await fetchval(dsn, orphans_held)) == 0

    # Orphans of earlier modules in this database are older than the TTL: the sweep
    # (every second here) clears them, every one, however many there are.
    assert await until(none_held, 60), "the sweep did not clear the expired orphans"
    run = uuid.uuid4().hex[:8]
    sent = ORPHAN_MAX + 25
    items = [{"request_id": f"{run}-o{i}", "label": i % 2} for i in range(sent)]
    topic = settings.topic("feedback")
    # Two list records on one partition: stored in this order, the bound applies exactly.
    await producer.send(topic, orjson.dumps(items[:20]), key=b"orphans")
    await producer.send(topic, orjson.dumps(items[20:]), key=b"orphans")
    await producer.flush()

    refused = await metric_reaches(
        base, "phoenix_feedback_orphans_refused_total", sent - ORPHAN_MAX
    )
    assert refused == sent - ORPHAN_MAX
    stored = int(
        await fetchval(dsn, "SELECT count(*) FROM feedback WHERE starts_with(request_id, $1)", run)
    )
    assert stored <= ORPHAN_MAX  # the sweep may already have taken some

    def all_refused(letters: list[dict[str, Any]]) -> bool:
        return sum(d["error_kind"] == "orphan_overflow" for d in letters) >= sent - ORPHAN_MAX

    letters = await consume_json(
        settings.kafka_url, settings.topic("dead-letters"), until=all_refused
    )
    overflow = [d for d in letters if d["error_kind"] == "orphan_overflow"]
    assert len(overflow) == sent - ORPHAN_MAX
    assert {d["field"] for d in overflow} == {"request_id"}
    assert all("PHOENIX_FEEDBACK_ORPHAN_MAX" in d["error"] for d in overflow)
    refused_ids = {
        orjson.loads(base64.b64decode(d["original_value"]))["request_id"] for d in overflow
    }
    assert refused_ids == {f"{run}-o{i}" for i in range(ORPHAN_MAX, sent)}  # the last ones

    # The TTL passes: the sweep deletes them and new orphans are taken again.
    assert await until(none_held, 60)
    expired = await metric_value(base, "phoenix_feedback_orphans_expired_total")
    assert expired >= ORPHAN_MAX


async def test_text_postgresql_cannot_store_is_refused_where_it_enters(
    worker: WorkerProcess, producer: AIOKafkaProducer, services: ServiceAddresses
) -> None:
    base, settings = worker.base_url, worker.settings
    run = uuid.uuid4().hex[:8]
    # HTTP: 400 naming the field, for requests and labels alike.
    got, body = await call("POST", f"{base}/v1/predict", {"entity_id": "c000001\x00x"})
    assert (got, body["field"]) == (400, "entity_id")
    got, body = await call(
        "POST", f"{base}/v1/predict", {"entity_id": "c000001", "features": {"age\x00": 30}}
    )
    assert (got, body["field"]) == (400, "features")
    got, body = await call(
        "POST", f"{base}/v1/feedback", {"request_id": "r\x00", "label": 1}, ANY_MODEL
    )
    assert (got, body["field"]) == (400, "request_id")

    # Kafka: dead-lettered by the inference agent at decode, never predicted; the good
    # item of the same batch record is predicted.
    bad = {"request_id": f"{run}-nul", "entity_id": "c000002\x00"}
    good = {"request_id": f"{run}-ok", "entity_id": "c000002"}
    await producer.send(settings.topic("requests"), orjson.dumps([bad, good]), key=b"c000002")
    await producer.flush()

    def has_ours(letters: list[dict[str, Any]]) -> bool:
        return any(d.get("source_topic") == settings.topic("requests") for d in letters)

    letters = await consume_json(settings.kafka_url, settings.topic("dead-letters"), until=has_ours)
    ours = [d for d in letters if d["source_topic"] == settings.topic("requests")]
    assert [(d["error_kind"], d["field"], d["batch_index"]) for d in ours] == [
        ("invalid_request", "entity_id", 0)
    ]
    rows = await stored_predictions(
        services.postgres_dsn,
        f"{run}-",
        until=lambda rs: any(r["request_id"] == good["request_id"] for r in rs),
    )
    assert [r["request_id"] for r in rows] == [good["request_id"]]
    predictions = await consume_json(
        settings.kafka_url,
        settings.topic("predictions"),
        until=lambda rs: any(r.get("request_id") == good["request_id"] for r in rs),
    )
    assert not [p for p in predictions if p.get("request_id") == bad["request_id"]]


# --------------------------------------------------- the attack on the rollout, shortened

REQUESTS = 1200
# The controller looks every 0.5 s: the attack's labels are given 12 looks to move it.
ROLLOUT_INTERVAL_S = 0.5
LOOKS = 12


async def test_labels_without_a_token_do_not_move_the_rollout(
    worker_factory: Any, producer: AIOKafkaProducer, services: ServiceAddresses
) -> None:
    worker: WorkerProcess = await worker_factory.start(
        admin_token=ADMIN,
        feedback_tokens=TOKENS,
        auto_promote=True,
        rollout_interval_s=ROLLOUT_INTERVAL_S,
        challenger_version="",
    )
    base, dsn = worker.base_url, services.postgres_dsn
    deployment_url = f"{base}/v1/deployments/{MODEL}"
    shadow = {"champion": "1", "challenger": "2", "strategy": "shadow", "reason": "try v2"}
    got, body = await call("PUT", deployment_url, shadow, ADMIN)
    assert got == 200, body
    generation = body["deployment"]["generation"]

    async def serving() -> bool:
        _, state = await call("GET", deployment_url)
        return bool(state["serving"] and state["serving"]["generation"] == generation)

    assert await until(serving, 60)
    run = uuid.uuid4().hex[:8]
    ids = [f"{run}-{i}" for i in range(REQUESTS)]
    predictions = await predict_on_kafka(producer, worker, dsn, ids)
    opposite = [
        {"request_id": r, "label": 1 - int(predictions[r]["label"])}
        for r in ids
        if predictions[r]["variant"] == "champion"
    ]
    assert len(opposite) == REQUESTS

    async def strategy() -> tuple[str, Any]:
        _, state = await call("GET", deployment_url)
        return state["serving"]["strategy"], state["serving"]["generation"]

    # Over HTTP without a feedback token: refused, whatever else the caller holds.
    for token in (None, ADMIN, "guessed-token-guessed-token"):
        for start in range(0, len(opposite), 600):
            got, body = await call(
                "POST", f"{base}/v1/feedback", opposite[start : start + 600], token
            )
            assert got in (401, 403) and body["field"] == "Authorization", body
    # On the Kafka topic: stored, as source kafka, which this worker does not trust.
    topic = worker.settings.topic("feedback")
    for start in range(0, len(opposite), 100):
        chunk = opposite[start : start + 100]
        await producer.send(topic, orjson.dumps(chunk), key=str(start).encode())
    await producer.flush()
    count = "SELECT count(*) FROM feedback WHERE starts_with(request_id, $1) AND source = $2"

    async def all_stored(source: str) -> bool:
        return int(await fetchval(dsn, count, f"{run}-", source)) == len(opposite)

    assert await until(lambda: all_stored("kafka"), 120)
    _, report = await call("GET", f"{base}/v1/models/{MODEL}/evaluation")
    assert report["label_sources"] == ["http"]

    async def moved() -> bool:
        return (await strategy()) != ("shadow", generation)

    # The controller has LOOKS looks at the stored labels; the rollout stays in shadow.
    assert not await until(moved, LOOKS * ROLLOUT_INTERVAL_S), await strategy()
    assert await strategy() == ("shadow", generation)

    # The same labels from a feedback token's holder are evidence: the controller acts
    # on them (so it was looking above, and only the source made the difference).
    for start in range(0, len(opposite), 600):
        got, body = await call(
            "POST", f"{base}/v1/feedback", opposite[start : start + 600], ANY_MODEL
        )
        assert (got, body["errors"]) == (202, []), body
    assert await all_stored("http:feedback-1")
    assert await until(moved, 120), "the controller never acted on authenticated labels"
    _, state = await call("GET", deployment_url)
    assert state["serving"]["actor"] == "rollout-controller"
