"""The Kafka readiness probe makes a real round trip: it fails once the broker is gone.

A private broker, not the session's: stopping that one would drop every topic that the
other tests' fixtures created. The probe runs over a real Faust app's own producer, as in
``/ready``; the worker's ``/ready`` 200 on the session broker is in test_http.py.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import faust
import pytest
from aiokafka.errors import KafkaError

from phoenix_stream.embedded import start_services, stop_services
from phoenix_stream.settings import faust_broker_url
from phoenix_stream.streaming.transport import broker_round_trip

# Generous: the machine is shared; the probe itself is bounded by /ready's own timeout.
ROUND_TRIP_TIMEOUT_S = 20.0


async def test_probe_answers_while_the_broker_runs_and_fails_once_it_stopped(
    tmp_path: Path,
) -> None:
    addresses = start_services(tmp_path, ["broker"])
    app = faust.App(f"probe-{uuid.uuid4().hex[:8]}", broker=faust_broker_url(addresses.kafka_url))
    try:
        await app.producer.start()
        await asyncio.wait_for(broker_round_trip(app), ROUND_TRIP_TIMEOUT_S)
        stop_services(tmp_path, ["broker"])
        # The producer still holds the broker in its cached metadata: only a request
        # sent to it can tell that it is gone.
        with pytest.raises(KafkaError, match="Unable to get cluster metadata"):
            await asyncio.wait_for(broker_round_trip(app), ROUND_TRIP_TIMEOUT_S)
    finally:
        await app.producer.stop()
        stop_services(tmp_path, ["broker"])
