"""Helpers for tests of code built on phoenix-stream (and for its own tests).

Every helper waits on a condition and returns as soon as it holds, with a timeout that
only bounds a failing test: callers assert on what came back, so a miss fails with the
records or rows in hand instead of hanging.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from contextlib import asynccontextmanager

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families

from phoenix_stream.settings import Settings, bootstrap_servers
from phoenix_stream.streaming.kafka_auth import PLAINTEXT, KafkaAuth, client_options
from phoenix_stream.training.datagen import entity_id_for

JsonRecords = list[dict[str, object]]

# How often the polling helpers look again, seconds.
POLL_S = 0.2


def covers(ids: Collection[str], field: str = "request_id") -> Callable[[JsonRecords], bool]:
    """A ``consume_json`` condition: every id in ``ids`` has a record whose ``field`` holds it."""
    wanted = frozenset(ids)

    def _covered(records: JsonRecords) -> bool:
        return wanted <= {str(r.get(field)) for r in records if isinstance(r, dict)}

    return _covered


async def create_topic(
    bootstrap: str, name: str, partitions: int, replication: int = 1, **configs: str
) -> None:
    """Create topic ``name`` on the broker at ``bootstrap`` (plaintext), ``configs`` its
    topic configs; the admin client is closed whatever happens."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, partitions, replication, topic_configs=configs or None)]
        )
    finally:
        await admin.close()


@asynccontextmanager
async def _from_the_beginning(
    kafka_url: str, topic: str, deadline: float, auth: KafkaAuth
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A consumer assigned every partition of ``topic`` (looked up until ``deadline``),
    at the beginning; stopped on leaving."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(kafka_url),
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        **client_options(auth),
    )
    await consumer.start()
    try:
        partitions: set[int] = set()
        while not partitions and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await asyncio.sleep(POLL_S)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if tps:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
        yield consumer, tps
    finally:
        await consumer.stop()


async def _read_some(consumer: AIOKafkaConsumer, out: JsonRecords) -> None:
    """One fetch (up to 200 ms), its JSON values appended to ``out``."""
    batches = await consumer.getmany(timeout_ms=200)
    for messages in batches.values():
        out.extend(orjson.loads(m.value or b"null") for m in messages)


async def consume_json(
    kafka_url: str,
    topic: str,
    expected: int | None = None,
    timeout_s: float = 60.0,
    *,
    until: Callable[[JsonRecords], bool] | None = None,
    auth: KafkaAuth = PLAINTEXT,
) -> JsonRecords:
    """JSON values of ``topic`` from the beginning, until a condition holds or ``timeout_s``.

    Returns as soon as ``expected`` records were read or ``until(records)`` is true
    (whichever is given; with both, when both hold); at the timeout, returns what it read.
    """
    if expected is None and until is None:
        raise ValueError("consume_json needs expected or until: it never waits a blind window")

    def done(records: JsonRecords) -> bool:
        return (expected is None or len(records) >= expected) and (until is None or until(records))

    out: JsonRecords = []
    deadline = time.monotonic() + timeout_s
    async with _from_the_beginning(kafka_url, topic, deadline, auth) as (consumer, tps):
        while tps and not done(out) and time.monotonic() < deadline:
            await _read_some(consumer, out)
    return out


async def read_to_end(
    kafka_url: str, topic: str, timeout_s: float = 60.0, *, auth: KafkaAuth = PLAINTEXT
) -> JsonRecords:
    """JSON values of every record ``topic`` holds now (up to its end offsets at the call).

    For a topic nobody writes to any more (its producers stopped): what is there, all of
    it, without waiting for a count. AssertionError if the end is not reached in time.
    """
    out: JsonRecords = []
    deadline = time.monotonic() + timeout_s
    async with _from_the_beginning(kafka_url, topic, deadline, auth) as (consumer, tps):
        ends = await consumer.end_offsets(tps) if tps else {}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s} s"
            await _read_some(consumer, out)
    return out


def key_per_partition(candidates: Iterable[str], partitions: int) -> list[str]:
    """For each partition 0..n-1, the first candidate that Kafka's default partitioner picks."""
    partitioner = DefaultPartitioner()
    every = list(range(partitions))
    found: dict[int, str] = {}
    for key in candidates:
        found.setdefault(partitioner(key.encode(), every, every), key)
        if len(found) == partitions:
            return [found[p] for p in every]
    raise ValueError(f"the candidate keys do not reach all {partitions} partitions")


async def read_through_sentinels(
    producer: AIOKafkaProducer,
    settings: Settings,
    topics: Collection[str] = ("predictions",),
    timeout_s: float = 60.0,
) -> dict[str, JsonRecords]:
    """All records the inference agent has put on ``topics`` (short names), sentinels left out.

    Call it once every request produced so far has shown an output: the agent takes one
    batch at a time and delivers its outputs before it takes the next, so sentinel requests
    produced now come out after all of them. A sentinel lands on every partition of every
    topic (predictions are keyed by entity, dead letters by the input's key), and each
    partition is read in order up to its sentinel, so nothing produced before is missed.
    """
    tag = uuid.uuid4().hex[:8]
    partitions = settings.topic_partitions
    requests_topic = settings.topic("requests")
    # Seeded entities (phoenix_stream.training.seeding), so no entity policy rejects them.
    entities = key_per_partition((entity_id_for(i) for i in range(1000)), partitions)
    good = [f"sentinel-{tag}-{p}" for p in range(partitions)]
    for request_id, entity in zip(good, entities, strict=True):
        request = {"request_id": request_id, "entity_id": entity}
        await producer.send(requests_topic, orjson.dumps(request), key=entity.encode())
    bad: dict[bytes, bytes] = {}  # not JSON: each comes back as a dead letter with its key
    if "dead-letters" in topics:
        keys = key_per_partition((f"sentinel-{tag}-k{i}" for i in range(1000)), partitions)
        bad = {key.encode(): f"{key}: not JSON".encode() for key in keys}
        for key, value in bad.items():
            await producer.send(requests_topic, value, key=key)
    await producer.flush()

    def original(record: dict[str, object]) -> bytes:
        return base64.b64decode(str(record.get("original_value") or ""))

    out: dict[str, JsonRecords] = {}
    for topic in topics:
        if topic == "dead-letters":
            wanted = set(bad.values())

            def seen(records: JsonRecords, wanted: set[bytes] = wanted) -> bool:
                return wanted <= {original(r) for r in records}

            records = await consume_json(
                settings.kafka_url,
                settings.topic(topic),
                until=seen,
                timeout_s=timeout_s,
                auth=KafkaAuth.from_settings(settings),
            )
            done = seen(records)
            out[topic] = [r for r in records if original(r) not in wanted]
        else:
            records = await consume_json(
                settings.kafka_url,
                settings.topic(topic),
                until=covers(good),
                timeout_s=timeout_s,
                auth=KafkaAuth.from_settings(settings),
            )
            done = covers(good)(records)
            out[topic] = [r for r in records if r.get("request_id") not in good]
        if not done:
            # Without its sentinels the read proves nothing: fail rather than return it.
            raise AssertionError(f"sentinels not seen on {topic} within {timeout_s} s")
    return out


async def prediction_rows(
    dsn: str,
    request_id_prefix: str,
    until: Callable[[list[asyncpg.Record]], bool] | None = None,
    timeout_s: float = 60.0,
) -> list[asyncpg.Record]:
    """Rows of ``predictions`` whose request_id starts with the prefix, ordered by request_id.

    Without ``until``, the rows now; with it, polls until ``until(rows)`` holds or
    ``timeout_s`` seconds passed, and returns the last rows read.
    """
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            rows: list[asyncpg.Record] = await connection.fetch(
                "SELECT * FROM predictions WHERE request_id LIKE $1 ORDER BY request_id",
                request_id_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                + "%",
            )
            if until is None or until(rows) or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(POLL_S)
    finally:
        await connection.close()


async def metric_value(base_url: str, sample: str, **labels: str) -> float:
    """A sample of a worker's ``GET /metrics``, e.g. ``phoenix_requests_total``; 0.0 if absent."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{base_url}/metrics") as response,
    ):
        response.raise_for_status()
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    return 0.0


async def metric_reaches(
    base_url: str, sample: str, value: float, timeout_s: float = 30.0, **labels: str
) -> float:
    """``metric_value`` once it is at least ``value``, or its last value after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = await metric_value(base_url, sample, **labels)
        if current >= value or time.monotonic() > deadline:
            return current
        await asyncio.sleep(POLL_S)
