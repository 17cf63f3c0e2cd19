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
from phoenix_stream.streaming.kafka_auth import PLAINTEXT, KafkaAuth, client_options

__all__ = ["ACKS", "new_producer"]

ACKS = "all"


def new_producer(
    kafka_url: str, *, auth: KafkaAuth = PLAINTEXT, **options: Any
) -> AIOKafkaProducer:
    """An aiokafka producer for ``kafka://host:port`` with acks=all, logging in as ``auth``;
    ``options`` passed on."""
    if "acks" in options:
        raise TypeError("new_producer always uses acks=all")
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers(kafka_url),
        acks=ACKS,
        **client_options(auth),
        **options,
    )
