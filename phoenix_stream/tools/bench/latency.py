"""End-to-end latency at a steady rate: produce with ``sent_at``, time the predictions.

A consumer on the predictions topic (10 ms fetch wait) is positioned before traffic
starts; requests are then produced one per record at ``rate`` requests/s, each stamped
with ``sent_at = time.time()`` just before its send. Latency is the prediction's arrival
in this process minus its ``sent_at``; the first ``warmup_s`` of traffic is discarded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from phoenix_stream.streaming.producers import new_producer
from phoenix_stream.tools.bench.kafka_io import bootstrap, partitions_of
from phoenix_stream.tools.bench.stats import percentile

__all__ = ["LatencyResult", "measure_latency"]


@dataclass
class LatencyResult:
    """Latencies (ms) of the predictions counted, and how many were produced and seen."""

    produced: int = 0
    received: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    rate_rps: float = 0.0  # the rate actually produced
    # Where the time went, per counted prediction (ms), from its received_at/predicted_at:
    # sent -> taken by the worker's batch, taken -> scored, scored -> seen here.
    parts_ms: dict[str, list[float]] = field(
        default_factory=lambda: {"to_worker": [], "in_worker": [], "to_client": []}
    )

    def p(self, q: float) -> float:
        """Latency percentile q (0..100), ms."""
        return percentile(self.latencies_ms, q)

    def breakdown(self) -> dict[str, float]:
        """Median (p50, ms) of each part of the latency."""
        return {
            f"{name}_p50_ms": round(percentile(values, 50), 2)
            for name, values in self.parts_ms.items()
        }


async def _collect(
    consumer: AIOKafkaConsumer,
    ids: set[str],
    result: LatencyResult,
    counted_from: list[float],
    done: asyncio.Event,
) -> None:
    while not done.is_set():
        batches = await consumer.getmany(timeout_ms=50, max_records=5000)
        now = time.time()
        for messages in batches.values():
            for message in messages:
                data = orjson.loads(message.value or b"null")
                if not isinstance(data, dict) or data.get("request_id") not in ids:
                    continue
                result.received += 1
                sent_at = data.get("sent_at")
                if isinstance(sent_at, float) and sent_at >= counted_from[0]:
                    result.latencies_ms.append((now - sent_at) * 1000.0)
                    _split(result.parts_ms, data, sent_at, now)


def _split(parts: dict[str, list[float]], data: dict[str, Any], sent_at: float, now: float) -> None:
    received_at, predicted_at = data.get("received_at"), data.get("predicted_at")
    if isinstance(received_at, float) and isinstance(predicted_at, float):
        parts["to_worker"].append((received_at - sent_at) * 1000.0)
        parts["in_worker"].append((predicted_at - received_at) * 1000.0)
        parts["to_client"].append((now - predicted_at) * 1000.0)


async def measure_latency(
    kafka_url: str,
    in_topic: str,
    out_topic: str,
    requests: Sequence[dict[str, Any]],
    *,
    rate: float,
    warmup_s: float = 1.0,
    drain_timeout_s: float = 10.0,
) -> LatencyResult:
    """Produce ``requests`` to ``in_topic`` at ``rate``/s and time them on ``out_topic``."""
    result = LatencyResult()
    ids = {str(r["request_id"]) for r in requests}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap(kafka_url), enable_auto_commit=False, fetch_max_wait_ms=10
    )
    producer = new_producer(kafka_url, linger_ms=0)
    await consumer.start()
    await producer.start()
    done = asyncio.Event()
    counted_from = [float("inf")]  # set once traffic starts
    collector: asyncio.Task[None] | None = None
    try:
        tps = [TopicPartition(out_topic, p) for p in await partitions_of(consumer, out_topic)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        collector = asyncio.create_task(_collect(consumer, ids, result, counted_from, done))
        started = time.time()
        counted_from[0] = started + warmup_s
        while result.produced < len(requests):
            due = min(len(requests), int((time.time() - started) * rate) + 1)
            while result.produced < due:
                request = dict(requests[result.produced])
                request["sent_at"] = time.time()
                await producer.send(
                    in_topic, value=orjson.dumps(request), key=str(request["entity_id"]).encode()
                )
                result.produced += 1
            await asyncio.sleep(0.002)
        result.rate_rps = result.produced / max(time.time() - started, 1e-9)
        await producer.flush()
        deadline = time.monotonic() + drain_timeout_s
        # Whatever has not arrived by the deadline is reported as received < produced.
        while result.received < result.produced and time.monotonic() < deadline:
            if collector.done():
                break  # it failed: awaiting it below raises the error
            await asyncio.sleep(0.05)
    finally:
        done.set()
        if collector is not None:
            await collector
        await producer.stop()
        await consumer.stop()
    return result
