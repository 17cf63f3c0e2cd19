"""Phase (a), the physical limit: a hand-written aiokafka loop doing the pipeline's work.

Per ``getmany`` batch: orjson decode, one Redis MGET (``FeatureStore.get_many``), one
float32 matrix with defaults and one ONNX call (``DirectScorer``), orjson encode, one
``create_batch``/``send_batch`` per partition, wait for delivery, commit. No Faust, no
routing, no validation. Run under uvloop by the bench runner::

    python -m phoenix_stream.tools.bench.baseline --kafka-url kafka://127.0.0.1:PORT \
        --redis-url redis://127.0.0.1:PORT/0 --models-dir models \
        --in-topic T.requests --out-topic T.predictions --group-id G

It runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from phoenix_stream.exceptions import FeatureStoreError
from phoenix_stream.features.codec import StoredFeatures
from phoenix_stream.features.store import FeatureStore
from phoenix_stream.streaming.producers import new_producer
from phoenix_stream.tools.bench.kafka_io import bootstrap
from phoenix_stream.tools.bench.scorer import DirectScorer

log = logging.getLogger("phoenix_stream.tools.bench.baseline")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the baseline loop."""
    parser = argparse.ArgumentParser(description="hand-written aiokafka baseline loop")
    parser.add_argument("--kafka-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--in-topic", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--group-id", required=True)
    parser.add_argument("--model", default="credit-risk")
    parser.add_argument("--version", default="1")
    parser.add_argument(
        "--max-records",
        type=int,
        default=1000,
        help="records per getmany (one MGET and one ONNX call each)",
    )
    parser.add_argument("--linger-ms", type=float, default=5.0)
    parser.add_argument("--redis-timeout-s", type=float, default=0.25)
    return parser.parse_args(argv)


async def send_all(
    producer: AIOKafkaProducer,
    topic: str,
    keys: Sequence[bytes],
    values: Sequence[bytes],
    partitioner: DefaultPartitioner,
) -> None:
    """Produce with one batch per partition (more if one overflows); wait for delivery."""
    partitions = sorted(await producer.partitions_for(topic))
    groups: dict[int, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        groups[partitioner(key, partitions, partitions)].append(index)
    futures: list[asyncio.Future[Any]] = []
    for partition, indices in groups.items():
        position = 0
        while position < len(indices):
            batch = producer.create_batch()
            start = position
            while position < len(indices):
                i = indices[position]
                if batch.append(key=keys[i], value=values[i], timestamp=None) is None:
                    break
                position += 1
            if position == start:
                raise ValueError("a prediction is larger than the producer's max batch size")
            futures.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*futures)


async def run(args: argparse.Namespace) -> int:
    """The loop; returns the number of requests scored when stopped."""
    scorer = DirectScorer(args.models_dir, args.model, args.version)
    store = FeatureStore(args.redis_url, timeout_s=args.redis_timeout_s)
    consumer = AIOKafkaConsumer(
        args.in_topic,
        bootstrap_servers=bootstrap(args.kafka_url),
        group_id=args.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1500,
        fetch_max_wait_ms=10,
    )
    producer = new_producer(
        args.kafka_url,
        linger_ms=args.linger_ms,
        max_batch_size=1_048_576,
        max_request_size=4 * 1_048_576,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    partitioner = DefaultPartitioner()
    scored = 0
    await store.start()
    await producer.start()
    await consumer.start()
    log.info("baseline consuming %s", args.in_topic)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=args.max_records)
            if not batches:
                continue
            received_at = time.time()
            requests: list[dict[str, Any]] = []
            for messages in batches.values():
                for message in messages:
                    data = orjson.loads(message.value)
                    requests.extend(data if isinstance(data, list) else (data,))
            ids = [r["entity_id"] for r in requests]
            try:
                stored: list[StoredFeatures | None] = await store.get_many(ids)
            except FeatureStoreError as exc:
                log.warning("%s; scoring with defaults", exc)
                stored = [None] * len(ids)
            values = scorer.score(requests, stored, received_at=received_at, source="kafka")
            await send_all(producer, args.out_topic, [i.encode() for i in ids], values, partitioner)
            await consumer.commit()
            scored += len(requests)
    finally:
        await consumer.stop()
        await producer.stop()
        await store.stop()
    log.info("baseline stopped after %d requests", scored)
    return scored


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: parse options and run the loop under uvloop."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    uvloop.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
