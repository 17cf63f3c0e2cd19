"""Routing strategies and entity policies on a real worker (the unit tests use fakes)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from phoenix_stream.serving.router import Deployment, route
from phoenix_stream.testing import consume_json, covers, read_through_sentinels

LOAN = {"credit_amount": 9.0, "duration_months": 12.0, "interest_rate": 6.5}


async def test_shadow_strategy_and_dead_lettered_unknown_entities(
    worker_factory: Any, producer: AIOKafkaProducer
) -> None:
    worker = await worker_factory.start(strategy="shadow", unknown_entity_policy="dead-letter")
    settings = worker.settings
    run = uuid.uuid4().hex[:8]
    for i in range(40):
        request = {"request_id": f"{run}-{i}", "entity_id": f"c{i:06d}", "features": LOAN}
        await producer.send(settings.topic("requests"), orjson.dumps(request), key=b"k")
    stranger = {"request_id": f"{run}-x", "entity_id": "stranger", "features": LOAN}
    await producer.send(settings.topic("requests"), orjson.dumps(stranger), key=b"k")
    await producer.flush()

    ids = {f"{run}-{i}" for i in range(40)}
    # Wait for an output of every request, then read all outputs through fresh sentinels:
    # a challenger prediction served by mistake, or a second dead letter, shows by then.
    await consume_json(settings.kafka_url, settings.topic("predictions"), until=covers(ids))
    await consume_json(settings.kafka_url, settings.topic("dead-letters"), 1)
    outputs = await read_through_sentinels(
        producer, settings, ("predictions", "shadow-predictions", "dead-letters")
    )
    served, shadow, dead = (
        outputs[topic] for topic in ("predictions", "shadow-predictions", "dead-letters")
    )
    assert sorted(str(p["request_id"]) for p in served) == sorted(ids)
    assert {(p["variant"], p["version"]) for p in served} == {("champion", "1")}
    assert {(p["variant"], p["version"]) for p in shadow} == {("challenger", "2")}
    assert {p["request_id"] for p in shadow} == {p["request_id"] for p in served}
    scores = {p["request_id"]: p["score"] for p in served}
    assert any(scores[p["request_id"]] != p["score"] for p in shadow)
    assert [(d["error_kind"], d["field"]) for d in dead] == [("unknown_entity", "entity_id")]


async def test_ab_split_matches_the_router(worker_factory: Any, producer: AIOKafkaProducer) -> None:
    worker = await worker_factory.start(strategy="ab", challenger_share=0.5)
    settings = worker.settings
    run = uuid.uuid4().hex[:8]
    entities = [f"c{i:06d}" for i in range(100)]
    for i, entity in enumerate(entities):
        request = {"request_id": f"{run}-{i}", "entity_id": entity, "features": LOAN}
        await producer.send(settings.topic("requests"), orjson.dumps(request), key=b"k")
    await producer.flush()
    ids = {f"{run}-{i}" for i in range(100)}
    served = await consume_json(
        settings.kafka_url, settings.topic("predictions"), until=covers(ids)
    )
    deployment = Deployment(settings.default_model, "1", "2", "ab", 0.5)
    assert sorted(str(p["request_id"]) for p in served) == sorted(ids)
    for prediction in served:
        expected = route(deployment, str(prediction["entity_id"]))
        assert (prediction["variant"], prediction["version"]) == (
            expected.variant,
            expected.version,
        )
    assert {p["variant"] for p in served} == {"champion", "challenger"}
