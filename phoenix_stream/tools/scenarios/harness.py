"""What every scenario does the same way: its workers, its traffic, its admin calls.

A scenario runs its own workers (on topics and an app id of its own, so runs sharing
services never meet), sends requests at a steady rate with each one's true label as
feedback after a delay, deploys through a worker's admin API with this run's token and
follows the topics it needs from their beginning (``follow``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
from aiokafka import AIOKafkaProducer

from phoenix_stream.settings import Settings
from phoenix_stream.streaming.kafka_auth import KafkaAuth
from phoenix_stream.streaming.producers import new_producer
from phoenix_stream.streaming.transport import track_sent_topics
from phoenix_stream.tools.scenarios.follow import follow_json
from phoenix_stream.tools.services import running_services, services_given
from phoenix_stream.tools.worker_process import WorkerProcess, free_port
from phoenix_stream.training.datagen import REQUEST_FEATURES

__all__ = [
    "TICK_S",
    "TOKEN",
    "Labelled",
    "follow_topic",
    "in_services",
    "paced_traffic",
    "poll",
    "put_deployment",
    "request_json",
    "running_workers",
    "scenario_settings",
]

TOKEN = secrets.token_hex(16)  # this run's admin token, passed to its workers
TICK_S = 0.05  # how often the traffic loop sends what is due
MODEL = "credit-risk"  # the one model every scenario serves
Labelled = list[tuple[str, int]]  # (request id, true label) of the requests just sent


def scenario_settings(
    settings: Settings,
    name: str,
    *,
    registry: Path,
    work_dir: Path,
    champion: str,
    step_labels: int,
    **more: Any,
) -> tuple[Settings, str]:
    """The workers' settings, and the run's tag (in its app id, topics and request ids).

    The scenario's simulator is the only producer on its own topics, so its Kafka labels
    are trusted (PHOENIX_TRUST_KAFKA_FEEDBACK; see the README's labels).
    """
    tag = uuid.uuid4().hex[:8]
    base = settings.with_overrides(
        models_dir=registry,
        state_dir=work_dir / "state",
        app_id=f"{name}-{tag}",
        topic_prefix=f"{name}{tag}.",
        champion_version=champion,
        challenger_version="",
        admin_token=TOKEN,
        trust_kafka_feedback=True,
        auto_promote=True,
        rollout_interval_s=1.0,
        canary_step_labels=step_labels,
        **more,
    )
    base.state_dir.mkdir(parents=True, exist_ok=True)
    return base, tag


@asynccontextmanager
async def running_workers(
    settings: Settings, count: int, logs: Path, tag: str
) -> AsyncIterator[list[WorkerProcess]]:
    """``count`` workers of ``settings`` (each on a port of its own), ready; stopped after."""
    workers = [
        WorkerProcess(settings.with_overrides(web_port=free_port()), logs / f"w-{tag}-{i}.log")
        for i in range(count)
    ]
    try:
        for worker in workers:
            worker.start()
        await asyncio.gather(*(w.wait_ready(120.0) for w in workers))
        yield workers
    finally:
        for worker in workers:
            worker.stop()


async def put_deployment(base_url: str, change: dict[str, Any]) -> dict[str, Any]:
    """Deploy ``change`` of the scenario's model through a worker's admin API."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
        session.put(
            f"{base_url}/v1/deployments/{MODEL}", data=orjson.dumps(change), headers=headers
        ) as response,
    ):
        body = orjson.loads(await response.read())
    if response.status != 200:
        raise RuntimeError(f"deploy refused: {response.status} {body}")
    deployment: dict[str, Any] = body["deployment"]
    return deployment


async def poll(holds: Callable[[], bool], timeout_s: float, every_s: float = TICK_S) -> bool:
    """Until ``holds()`` (other tasks change what it reads) or the timeout; whether it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if holds():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)


async def paced_traffic(
    settings: Settings,
    rate: float,
    feedback_delay_s: float,
    stop: asyncio.Event,
    send: Callable[[AIOKafkaProducer, int, int], Awaitable[Labelled]],
) -> None:
    """Requests at ``rate`` per second until ``stop``, and their true labels as feedback.

    Every tick, ``send(producer, first, n)`` sends the ``n`` requests now due (numbered
    from ``first``) and says which ones, with their labels; those labels go to the
    feedback topic ``feedback_delay_s`` later. The producer is flushed before it stops.
    """
    producer = track_sent_topics(
        new_producer(settings.kafka_url, auth=KafkaAuth.from_settings(settings), linger_ms=5)
    )
    await producer.start()
    due: deque[tuple[float, Labelled]] = deque()
    started = time.monotonic()
    counter = 0
    try:
        while not stop.is_set():
            n = int((time.monotonic() - started) * rate) - counter
            if n > 0:
                sent = await send(producer, counter + 1, n)
                counter += n
                due.append((time.monotonic() + feedback_delay_s, sent))
            while due and due[0][0] <= time.monotonic():
                for request_id, label in due.popleft()[1]:
                    feedback = {"request_id": request_id, "label": label}
                    await producer.send(
                        settings.topic("feedback"), orjson.dumps(feedback), key=request_id.encode()
                    )
            await asyncio.sleep(TICK_S)
        await producer.flush()
    finally:
        await producer.stop()


def request_json(
    request_id: str, entity_id: str, loans: Mapping[str, np.ndarray], j: int, sent_at: float
) -> bytes:
    """Request ``j`` of a batch of sampled loans (``sample_request_features``), as sent."""
    return orjson.dumps(
        {
            "request_id": request_id,
            "entity_id": entity_id,
            "features": {f: float(loans[f][j]) for f in REQUEST_FEATURES},
            "sent_at": sent_at,
        }
    )


async def follow_topic(
    settings: Settings, name: str, on_value: Callable[[dict[str, Any]], None]
) -> None:
    """``on_value`` for every JSON object on the run's topic ``name`` (until cancelled)."""
    await follow_json(
        settings.kafka_url, settings.topic(name), on_value, auth=KafkaAuth.from_settings(settings)
    )


async def in_services(
    settings: Settings, work_dir: Path, run: Callable[[Settings], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """``run`` on the embedded services (started here unless their URLs are set)."""
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    async with running_services(
        settings, work_dir / "services", own=not services_given()
    ) as running:
        return await run(running)
