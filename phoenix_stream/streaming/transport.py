"""Faust's Kafka transport with a short fetch wait, and the one door to its producer.

Faust 0.15.3 hard-codes ``fetch_max_wait_ms=1500`` for worker consumers: on a quiet
topic every fetch then idles up to 1.5 s, which made end-to-end p50 380 ms here. The
subclasses below set the wait from ``PHOENIX_FETCH_MAX_WAIT_MS`` before the aiokafka
consumer starts. Both reach into private attributes of Faust and aiokafka; they are
kept in this module only, so an upgrade has one place to check.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitResults

log = logging.getLogger(__name__)


class _ShortFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        wait_ms = cast(ShortFetchTransport, transport).fetch_max_wait_ms
        consumer._fetch_max_wait_ms = wait_ms
        log.info("worker consumer fetch_max_wait_ms=%d (Faust's default: 1500)", wait_ms)
        return consumer


class _ShortFetchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ShortFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def wait_first(
        self,
        *coros: Any,
        timeout: Any = None,  # noqa: ASYNC109 - the signature is mode's
    ) -> WaitResults:
        """Deliver a record without mode's four-task race while flow is active.

        Faust's drain loop calls ``wait_first(callback(message), suspend_flow.wait())``
        once per record, so that a rebalance can abort a delivery stuck on a full stream
        buffer; mode builds four tasks and an ``asyncio.wait`` for it (~40 us a record, a
        third of Faust's per-record cost here). While flow is active we await the
        delivery directly. If a rebalance suspends flow meanwhile, the delivery waits in
        the stream's flow-controlled queue until flow resumes and the record is processed
        once more than needed: at-least-once still holds, nothing is lost.
        """
        if (
            timeout is None
            and len(coros) == 2
            and getattr(coros[1], "cr_code", None) is type(self.suspend_flow).wait.__code__
            and not self.suspend_flow.is_set()
        ):
            deliver, suspended = coros
            suspended.close()  # never awaited: closing it keeps Python from warning
            result = await deliver
            return WaitResults([deliver], [result], False)
        return await super().wait_first(*coros, timeout=timeout)


class ShortFetchTransport(faust_aiokafka.Transport):
    """aiokafka transport whose worker consumers wait at most ``fetch_max_wait_ms``."""

    Consumer: ClassVar[type[Any]] = _ShortFetchConsumer
    fetch_max_wait_ms: int = 10


def kafka_producer(app: faust.App) -> aiokafka.AIOKafkaProducer:
    """The aiokafka producer inside Faust's producer (for ``create_batch``/``send_batch``).

    Faust 0.15.3 has no batch send; using its own producer keeps one connection pool and
    lets Faust flush it on shutdown.
    """
    producer = cast(Any, app.producer)._producer
    if producer is None:
        raise RuntimeError("Faust's producer is not started yet")
    return cast(aiokafka.AIOKafkaProducer, producer)


async def broker_round_trip(app: faust.App) -> None:
    """Ask a broker for cluster metadata over Faust's producer connections (a real request).

    ``AIOKafkaClient.fetch_all_metadata`` (aiokafka 0.14) sends a ``MetadataRequest`` to a
    known broker, trying each in turn, and raises ``KafkaError`` when none answers; the
    client's cached ``cluster`` would report a broker that has gone. No timeout here: the
    caller bounds it (a connection attempt alone may take ``request_timeout_ms``).
    """
    await kafka_producer(app).client.fetch_all_metadata()
