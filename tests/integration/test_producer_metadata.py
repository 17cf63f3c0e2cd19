"""The producer keeps the metadata of every topic it sends to, across metadata refreshes.

aiokafka 0.14's client asks for all topics' metadata until a topic is added explicitly
(the first send to a topic it does not know), then only for the added ones; a topic it
sent to while known drops out at the next refresh, and a batch queued for it then waits
for a leader until the request timeout (Faust's: 20 minutes). A worker's inference
agent stopped that way 5 minutes after start (the default refresh period).
``track_sent_topics`` adds every topic before its send; Faust's producer in our
transport is built with it.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from phoenix_stream.app import app
from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.settings import bootstrap_servers
from phoenix_stream.streaming.transport import track_sent_topics
from phoenix_stream.testing import create_topic

REFRESH_MS = 300  # metadata refresh period of the producers here
TIMEOUT_S = 30.0


async def refreshed(producer: AIOKafkaProducer, after_ms: float) -> None:
    """Until the producer's metadata was refreshed (successfully) after ``after_ms``."""
    deadline = time.monotonic() + TIMEOUT_S
    cluster = producer.client.cluster
    while cluster._last_successful_refresh_ms <= after_ms:
        assert time.monotonic() < deadline, "no metadata refresh"
        await asyncio.sleep(0.05)


async def topics_known_after_a_refresh(servers: str, *, tracked: bool) -> set[str]:
    """Send to a topic known at start, then to a new one; which are known after a refresh."""
    run = uuid.uuid4().hex[:8]
    known, new = f"meta-{run}-known", f"meta-{run}-new"
    await create_topic(servers, known, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=servers, metadata_max_age_ms=REFRESH_MS)
    if tracked:
        track_sent_topics(producer)
    await producer.start()
    try:
        # Known from a refresh of all topics before its first send (the client asks for
        # all while it tracks none). Tansu answers start-up's metadata with every topic
        # already; Apache Kafka names none there, so wait for a refresh that has it.
        deadline = time.monotonic() + TIMEOUT_S
        while known not in producer.client.cluster.topics():
            assert time.monotonic() < deadline, "the topic never appeared in the metadata"
            await producer.client.force_metadata_update()
        assert not producer.client._topics  # nothing added: the patch has nothing to keep
        await producer.send_and_wait(known, b"first")
        await producer.send_and_wait(new, b"second")  # unknown: added to the client
        await refreshed(producer, time.time() * 1000)
        cluster = producer.client.cluster
        return {t for t in (known, new) if cluster.partitions_for_topic(t) is not None}
    finally:
        await producer.stop()


@pytest.mark.brokers("tansu", "kafka")
@pytest.mark.parametrize("tracked", [True, False], ids=["tracked", "stock"])
async def test_a_topic_sent_to_stays_in_the_producers_metadata(
    services: ServiceAddresses, tracked: bool
) -> None:
    servers = bootstrap_servers(services.kafka_url)
    known = await topics_known_after_a_refresh(servers, tracked=tracked)
    if tracked:
        assert len(known) == 2, known
    else:
        # The stock client forgets the topic it sent to first: what this patch is for.
        # If this fails, aiokafka fixed it and track_sent_topics can go.
        assert len(known) == 1 and next(iter(known)).endswith("-new"), known


async def test_fausts_producer_is_built_tracking() -> None:
    built = app.transport.create_producer()._new_producer()
    try:
        assert built.client._wait_on_metadata.__name__ == "_wait_on_tracked_metadata"
    finally:
        await built.stop()  # never started: closes without a connection
