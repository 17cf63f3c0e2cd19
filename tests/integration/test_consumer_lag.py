"""Consumer lag a user can trust: reported on Apache Kafka, refused on Tansu.

On Kafka, requests produced before the worker starts wait in ``requests``: the worker's
lag sampler sees them (``phoenix_consumer_lag_records`` and ``/ready``'s ``lag``) and
then sees the lag drain to 0 once the worker consumed and committed them. On Tansu, whose
end offsets are wrong, the worker reports no lag series, ``trusted`` 0 and a reason.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from phoenix_stream.settings import Settings
from phoenix_stream.streaming.topics import app_topic_specs, declare_topics
from phoenix_stream.tools.worker_process import free_port

REQUESTS = 20_000
# Bounds only for a failing run on a loaded machine; the waits return once met.
DRAIN_TIMEOUT_S = 180.0
REASON_TIMEOUT_S = 60.0
POLL_S = 0.1


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[str, Any] | None:
    """``GET /metrics`` text and ``/ready`` JSON of a worker, None while it does not answer."""
    timeout = aiohttp.ClientTimeout(total=2)
    try:
        async with session.get(f"{url}/metrics", timeout=timeout) as response:
            text = await response.text()
        async with session.get(f"{url}/ready", timeout=timeout) as response:
            ready = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return text, ready


def _lag_series(text: str) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "phoenix_consumer_lag_records":
                found[(sample.labels["topic"], sample.labels["partition"])] = sample.value
    return found


def _trusted(text: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "phoenix_consumer_lag_trusted":
                return float(sample.value)
    return None


async def _produce_requests(producer: AIOKafkaProducer, topic: str, run: str) -> None:
    for i in range(REQUESTS):
        body = {"request_id": f"{run}-{i}", "entity_id": f"c{i % 2000:06d}"}
        await producer.send(topic, orjson.dumps(body), key=f"c{i % 2000:06d}".encode())
    await producer.flush()


@pytest.mark.brokers("kafka")
async def test_lag_of_waiting_requests_is_reported_then_drains_to_zero(
    broker_kind: str, worker_factory: Any, producer: AIOKafkaProducer
) -> None:
    tag = uuid.uuid4().hex[:8]
    overrides: dict[str, object] = {
        "app_id": f"test-{tag}",
        "topic_prefix": f"t{tag}.",
        "topic_partitions": 2,
        "web_port": free_port(),
        "lag_interval_s": 0.25,
        # Small batches: the worker drains for seconds, not a fraction of a sample.
        "take_max": 20,
    }
    settings = Settings(kafka_url=worker_factory.services.kafka_url, **overrides)  # type: ignore[arg-type]
    requests_topic = settings.topic("requests")
    # Declared as the worker declares them, so its start finds them as it wants them.
    await declare_topics(settings.kafka_url, app_topic_specs(settings).values())
    await _produce_requests(producer, requests_topic, tag)

    seen_metric: dict[str, float] = {}
    seen_ready: dict[str, int] = {}
    url = f"http://127.0.0.1:{overrides['web_port']}"

    async def watch(until: float) -> tuple[str, Any] | None:
        """Record the largest requests lag seen until ``until``; the last answer."""
        last = None
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < until:
                answer = await _get(session, url)
                if answer is not None:
                    last = answer
                    text, ready = answer
                    for (topic, partition), value in _lag_series(text).items():
                        if topic == requests_topic:
                            seen_metric[partition] = max(seen_metric.get(partition, 0), value)
                    reported = (ready.get("lag") or {}).get(requests_topic) or {}
                    for partition, value in reported.items():
                        seen_ready[partition] = max(seen_ready.get(partition, 0), value)
                    if _drained(answer):
                        return answer
                await asyncio.sleep(POLL_S)
        return last

    def _drained(answer: tuple[str, Any]) -> bool:
        text, ready = answer
        series = {p: v for (t, p), v in _lag_series(text).items() if t == requests_topic}
        lag = (ready.get("lag") or {}).get(requests_topic) or {}
        return (
            bool(seen_metric)
            and bool(seen_ready)
            and set(series) == {"0", "1"}
            and all(v == 0 for v in series.values())
            and set(lag) == {"0", "1"}
            and all(v == 0 for v in lag.values())
        )

    started = time.monotonic()
    watcher = asyncio.create_task(watch(started + DRAIN_TIMEOUT_S))
    await worker_factory.start(**overrides)
    last = await watcher
    print(  # the figures, for the README (pytest -s)
        f"lag: {REQUESTS} waiting, largest seen /metrics {seen_metric}, /ready {seen_ready}; "
        f"drained to 0 within {time.monotonic() - started:.1f} s of the worker's start"
    )

    assert sum(seen_metric.values()) > 0, f"no requests lag seen in /metrics: {seen_metric}"
    assert sum(seen_ready.values()) > 0, f"no requests lag seen in /ready: {seen_ready}"
    assert last is not None and _drained(last), f"lag did not drain: {last and last[1]}"
    text, ready = last
    assert _trusted(text) == 1.0
    assert ready["lag_reason"] is None and 0 <= ready["lag_age_s"] < 30
    # Only the app's own topics, never Faust's changelogs or its leader topic.
    assert {topic for topic, _ in _lag_series(text)} <= {
        spec.name for spec in app_topic_specs(settings).values()
    }


async def test_tansu_end_offsets_are_not_trusted(worker_factory: Any) -> None:
    worker = await worker_factory.start(lag_interval_s=0.25)
    deadline = time.monotonic() + REASON_TIMEOUT_S
    answer = None
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            answer = await _get(session, worker.base_url)
            if answer is not None and "cannot be trusted" in str(answer[1].get("lag_reason")):
                break
            await asyncio.sleep(POLL_S)
    assert answer is not None
    text, ready = answer
    assert ready["lag"] is None, ready
    assert "cannot be trusted" in ready["lag_reason"] and "tansu_cluster" in ready["lag_reason"]
    assert ready["lag_age_s"] is None
    assert _lag_series(text) == {}
    assert _trusted(text) == 0.0
