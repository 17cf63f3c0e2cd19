"""The project's own Kafka producers (tools, scenarios, benchmarks): acks=all, as the worker's.

aiokafka's default is ``acks=1``: the partition leader alone has the record when the send
returns, and a leader lost before its followers copied it loses the record. The worker's
Faust producer uses ``acks=-1`` (app.py); every producer the project builds itself comes
from :func:`new_producer`, so that none is built with the default by accident.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from phoenix_stream.settings import bootstrap_servers

__all__ = ["ACKS", "new_producer"]

ACKS = "all"


def new_producer(kafka_url: str, **options: Any) -> AIOKafkaProducer:
    """An aiokafka producer for ``kafka://host:port`` with acks=all; ``options`` passed on."""
    if "acks" in options:
        raise TypeError("new_producer always uses acks=all")
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers(kafka_url), acks=ACKS, **options)
