"""Is a Kafka-protocol broker ready? Asked with aiokafka's own client, not by hand.

A hand-written Metadata v0 request served Tansu, but Apache Kafka 4 no longer answers
protocol versions older than clients from 2.1 (KIP-896); aiokafka negotiates versions
with ApiVersions, so one probe serves both brokers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

__all__ = ["advertised_brokers"]

_AIOKAFKA_LOGGERS = ("aiokafka", "aiokafka.conn", "aiokafka.client", "aiokafka.cluster")


def advertised_brokers(
    bootstrap: str, timeout_s: float = 2.0, options: Mapping[str, Any] | None = None
) -> set[tuple[str, int]]:
    """The (host, port) of every broker that ``bootstrap`` (``host:port[,...]``) advertises.

    Empty when no broker answered a Metadata request within ``timeout_s`` seconds. Call
    it from a thread without a running event loop (the embedded services start in one).
    """

    async def probe() -> set[tuple[str, int]]:
        client = AIOKafkaClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout_s * 1000),
            connections_max_idle_ms=int(timeout_s * 1000) + 1000,
            **(options or {}),  # security: streaming.kafka_auth.client_options
        )
        try:
            await asyncio.wait_for(client.bootstrap(), timeout_s)
            return {(broker.host, broker.port) for broker in client.cluster.brokers()}
        except (TimeoutError, KafkaError, OSError):
            return set()
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await client.close()

    # A broker still starting makes aiokafka log a connection error per try: that is the
    # expected answer of a readiness poll, not something for the user's terminal. Only
    # this thread's records are dropped; other clients in the process still log.
    muted = _ThreadFilter(threading.get_ident())
    loggers = [logging.getLogger(name) for name in _AIOKAFKA_LOGGERS]
    for logger in loggers:
        logger.addFilter(muted)
    try:
        return asyncio.run(probe())
    finally:
        for logger in loggers:
            logger.removeFilter(muted)


class _ThreadFilter(logging.Filter):
    """Drops the records logged by one thread."""

    def __init__(self, thread_id: int) -> None:
        super().__init__()
        self.thread_id = thread_id

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread_id
