"""``phoenix-stream tail TOPIC``: a topic's records as they arrive, one JSON line each.

What the pipeline produced (predictions, dead letters, deployment decisions, drift
reports, retrain requests) read straight from the broker, without a consumer group (no
offsets are committed, nobody's partitions move). A value that is JSON is printed as
JSON; anything else as its bytes in base64, so any record prints on one line.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from phoenix_stream.exceptions import PhoenixError
from phoenix_stream.settings import TOPICS, Settings
from phoenix_stream.streaming.end_offsets import read_end_offsets
from phoenix_stream.streaming.kafka_auth import KafkaAuth, client_options

__all__ = ["TOPICS", "TailError", "TailOptions", "record_line", "tail"]  # TOPICS: what tail takes
METADATA_WAIT_S = 10.0


class TailError(PhoenixError):
    """The topic cannot be read (absent, or the broker does not answer)."""


@dataclass(frozen=True)
class TailOptions:
    """``from_beginning``: every record kept, else only those that arrive from now;
    ``limit``: stop after that many records; ``idle_s``: stop after that long without one."""

    from_beginning: bool = False
    limit: int | None = None
    idle_s: float | None = None


def record_line(
    topic: str, partition: int, offset: int, timestamp_ms: int | None, key: Any, value: Any
) -> str:
    """One record as one JSON line; never raises, whatever the bytes."""
    line: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset}
    if timestamp_ms is not None:
        line["timestamp"] = timestamp_ms / 1000.0
    line["key"] = _text_or_base64(key)
    try:
        line["value"] = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        line["value_base64"] = base64.b64encode(value).decode("ascii")
    return orjson.dumps(line).decode()


def _text_or_base64(data: bytes | None) -> str | dict[str, str] | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


async def tail(
    settings: Settings, short_name: str, options: TailOptions, emit: Callable[[str], None]
) -> int:
    """Print ``short_name``'s records through ``emit`` until a bound is reached (or the
    caller is cancelled); returns how many were printed."""
    topic = settings.topic(short_name)
    consumer = _consumer(settings)
    try:
        await asyncio.wait_for(consumer.start(), METADATA_WAIT_S)
    except Exception as exc:  # OSError, a timeout, aiokafka's KafkaConnectionError
        await consumer.stop()
        raise TailError(f"cannot reach the broker at {settings.kafka_bootstrap}: {exc!r}") from exc
    printed = 0
    try:
        partitions = await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if options.from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            # The ends read from the log: Tansu reports them short (streaming.end_offsets),
            # and "from now" would print the rest of each partition's last batch.
            reported = await consumer.end_offsets(tps)
            ends = await read_end_offsets(reported, lambda: _consumer(settings))
            for tp in tps:
                consumer.seek(tp, ends.get(tp) or 0)
        last_record = time.monotonic()
        while options.limit is None or printed < options.limit:
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for m in messages:
                    emit(record_line(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value))
                    printed += 1
                    last_record = time.monotonic()
                    if options.limit is not None and printed >= options.limit:
                        return printed
            if options.idle_s is not None and time.monotonic() - last_record >= options.idle_s:
                return printed
    finally:
        await consumer.stop()
    return printed


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    """A group-less consumer of the settings' cluster, logged in as the worker is."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        **client_options(KafkaAuth.from_settings(settings)),
    )


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    deadline = time.monotonic() + METADATA_WAIT_S
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if time.monotonic() >= deadline:
            raise TailError(f"no topic {topic!r} on the broker (a worker creates it at start)")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)
