"""compose.yaml runs the Apache Kafka version that the tests run."""

from __future__ import annotations

import re
from pathlib import Path

from phoenix_stream.embedded.kafka_jars import KAFKA_VERSION

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


def test_compose_pins_the_tested_kafka() -> None:
    images = re.findall(r"^\s*image:\s*apache/kafka:(\S+)\s*$", COMPOSE.read_text(), re.M)
    # The broker and its one-shot helpers (storage format with SCRAM users, ACLs).
    assert images and set(images) == {KAFKA_VERSION}
