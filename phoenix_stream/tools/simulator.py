"""Simulated clients: realistic requests produced to the requests topic at a steady rate.

Profiles live in Redis (seeded); each request carries only the loan asked for, as a real
client would. A share of records can be malformed (bad JSON, wrong types, NaN, missing
fields) and a share can name entities that were never seeded, to show how the pipeline
dead-letters and defaults.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import orjson

from phoenix_stream.settings import Settings
from phoenix_stream.streaming.kafka_auth import KafkaAuth
from phoenix_stream.streaming.producers import new_producer
from phoenix_stream.streaming.transport import track_sent_topics
from phoenix_stream.training.datagen import entity_id_for, sample_request_features

# Malformed records the simulator can send, each a different way to be wrong.
MALFORMED: tuple[bytes, ...] = (
    b'{"request_id": "broken", "entity_id": ',  # truncated JSON
    b'{"request_id": "no-entity"}',  # missing field
    b'{"request_id": "bad-type", "entity_id": "c000001", "features": {"credit_amount": "lots"}}',
    b'{"request_id": "nan", "entity_id": "c000001", "features": {"credit_amount": NaN}}',
    b"\xff\xfe not even text",
)


@dataclass(frozen=True)
class SimulationConfig:
    """Traffic shape: requests/s, seconds, entity pool, shares of bad traffic (0..1)."""

    rate: float = 200.0
    duration_s: float = 10.0
    entities: int = 100_000
    malformed_share: float = 0.0
    unknown_share: float = 0.0
    batch: int = 1  # requests per Kafka record
    seed: int = 1
    shift: float = 0.0  # request-feature drift, in standard deviations


@dataclass
class SimulationReport:
    """What was produced: requests, records, malformed records, seconds."""

    requests: int = 0
    records: int = 0
    malformed: int = 0
    unknown_entities: int = 0
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return asdict(self)


class RequestFactory:
    """Deterministic stream of request dicts (and malformed records) for a config."""

    def __init__(self, config: SimulationConfig, run_id: str | None = None) -> None:
        self.config = config
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self._rng = np.random.default_rng(config.seed)
        self._counter = 0

    def requests(self, n: int) -> list[dict[str, Any]]:
        """``n`` well-formed requests with unique ids and loan features."""
        features = sample_request_features(self._rng, n, self.config.shift)
        columns = {name: values.tolist() for name, values in features.items()}
        indices = self._rng.integers(0, self.config.entities, size=n).tolist()
        unknown = (self._rng.random(n) < self.config.unknown_share).tolist()
        now = time.time()
        out: list[dict[str, Any]] = []
        for i in range(n):
            self._counter += 1
            entity = f"unknown-{indices[i]}" if unknown[i] else entity_id_for(indices[i])
            out.append(
                {
                    "request_id": f"{self.run_id}-{self._counter}",
                    "entity_id": entity,
                    "features": {name: column[i] for name, column in columns.items()},
                    "sent_at": now,
                }
            )
        return out

    def malformed(self) -> bytes:
        """One malformed record, cycling through ``MALFORMED``."""
        self._counter += 1
        return MALFORMED[self._counter % len(MALFORMED)]


def encode_records(requests: list[dict[str, Any]], batch: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) records: one request each, or lists of ``batch`` requests."""
    if batch <= 1:
        for request in requests:
            yield request["entity_id"].encode(), orjson.dumps(request)
        return
    for start in range(0, len(requests), batch):
        chunk = requests[start : start + batch]
        yield chunk[0]["entity_id"].encode(), orjson.dumps(chunk)


def full_records(
    pending: list[dict[str, Any]], batch: int, *, last: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``pending`` into the requests that fill whole records of ``batch`` and the rest.

    The rest waits for the next tick, so that each record holds ``batch`` requests at any
    rate (cut per 50 ms tick, 500 req/s made records of 25 for ``--batch 100``); ``last``
    sends the rest too, in a shorter final record.
    """
    if last or batch <= 1:
        return pending, []
    whole = len(pending) - len(pending) % batch
    return pending[:whole], pending[whole:]


async def run_simulation(
    settings: Settings, config: SimulationConfig, *, run_id: str | None = None
) -> SimulationReport:
    """Produce traffic for ``config.duration_s`` seconds at ``config.rate`` requests/s."""
    factory = RequestFactory(config, run_id)
    report = SimulationReport()
    producer = track_sent_topics(
        new_producer(
            settings.kafka_url,
            auth=KafkaAuth.from_settings(settings),
            linger_ms=5,
            max_batch_size=1_048_576,
            max_request_size=4 * 1_048_576,
        )
    )
    topic = settings.topic("requests")
    await producer.start()
    started = time.monotonic()
    try:
        tick_s = 0.05
        total = int(config.rate * config.duration_s)
        malformed_rng = np.random.default_rng(config.seed + 1)
        pending: list[dict[str, Any]] = []  # made, waiting to fill a record of config.batch
        while report.requests < total:
            due = min(total, int((time.monotonic() - started) * config.rate) + 1)
            n = due - report.requests
            if n > 0:
                requests = factory.requests(n)
                report.unknown_entities += sum(
                    r["entity_id"].startswith("unknown-") for r in requests
                )
                ready, pending = full_records(pending + requests, config.batch, last=due == total)
                for key, value in encode_records(ready, config.batch):
                    await producer.send(topic, value=value, key=key)
                    report.records += 1
                bad = (
                    int(malformed_rng.binomial(n, config.malformed_share))
                    if config.malformed_share > 0
                    else 0
                )
                for _ in range(bad):
                    await producer.send(topic, value=factory.malformed(), key=b"malformed")
                    report.malformed += 1
                    report.records += 1
                report.requests += n
            await asyncio.sleep(tick_s)
        await producer.flush()
    finally:
        await producer.stop()
    report.elapsed_s = time.monotonic() - started
    return report
