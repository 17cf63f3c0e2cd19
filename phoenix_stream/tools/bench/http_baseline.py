"""The HTTP baseline: a bare aiohttp server doing the work of the worker's predict view.

``POST /v1/predict``: parse the JSON body, one Redis GET of the entity
(``FeatureStore.get_many([id])``), ONNX on one row, produce the prediction with aiokafka
and await its delivery, answer with the prediction JSON. ``GET /ready`` answers 200
once everything is open. Run under uvloop by the bench runner::

    python -m phoenix_stream.tools.bench.http_baseline --port PORT --kafka-url kafka://... \
        --redis-url redis://... --models-dir models --topic T.predictions

It serves on 127.0.0.1 until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
import uvloop
from aiohttp import web
from aiokafka import AIOKafkaProducer

from phoenix_stream.exceptions import FeatureStoreError
from phoenix_stream.features.codec import StoredFeatures
from phoenix_stream.features.store import FeatureStore
from phoenix_stream.streaming.producers import new_producer
from phoenix_stream.tools.bench.scorer import DirectScorer

log = logging.getLogger("phoenix_stream.tools.bench.http_baseline")

JSON = "application/json"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the HTTP baseline server."""
    parser = argparse.ArgumentParser(description="bare aiohttp predict baseline")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kafka-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--topic", required=True, help="where predictions are produced")
    parser.add_argument("--model", default="credit-risk")
    parser.add_argument("--version", default="1")
    parser.add_argument("--linger-ms", type=float, default=5.0)
    parser.add_argument("--redis-timeout-s", type=float, default=0.25)
    return parser.parse_args(argv)


class PredictHandler:
    """The predict endpoint's work, with its open Redis store and Kafka producer."""

    def __init__(
        self, scorer: DirectScorer, store: FeatureStore, producer: AIOKafkaProducer, topic: str
    ) -> None:
        self.scorer = scorer
        self.store = store
        self.producer = producer
        self.topic = topic

    async def predict(self, request: web.Request) -> web.Response:
        """200 with the prediction; 400 on bad JSON, 422 without a string entity_id."""
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400, body=b'{"error": "invalid JSON"}', content_type=JSON)
        entity_id = data.get("entity_id") if isinstance(data, dict) else None
        if not isinstance(entity_id, str):
            return web.Response(status=422, body=b'{"field": "entity_id"}', content_type=JSON)
        received_at = time.time()
        try:
            stored: list[StoredFeatures | None] = await self.store.get_many([entity_id])
        except FeatureStoreError:
            stored = [None]
        value = self.scorer.score([data], stored, received_at=received_at, source="http")[0]
        await self.producer.send_and_wait(self.topic, value=value, key=entity_id.encode())
        return web.Response(body=value, content_type=JSON)

    async def ready(self, request: web.Request) -> web.Response:
        """200 once started (the bench runner polls it)."""
        return web.Response(body=b'{"ready": true}', content_type=JSON)


async def serve(args: argparse.Namespace) -> None:
    """Open Redis and Kafka, serve until a stop signal, close everything."""
    scorer = DirectScorer(args.models_dir, args.model, args.version)
    store = FeatureStore(args.redis_url, timeout_s=args.redis_timeout_s)
    producer = new_producer(args.kafka_url, linger_ms=args.linger_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await store.start()
    await producer.start()
    handler = PredictHandler(scorer, store, producer, args.topic)
    app = web.Application()
    app.router.add_post("/v1/predict", handler.predict)
    app.router.add_get("/ready", handler.ready)
    runner = web.AppRunner(app, access_log=None)  # as Faust's web driver
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        log.info("HTTP baseline on 127.0.0.1:%d", args.port)
        await stop.wait()
    finally:
        await runner.cleanup()
        await producer.stop()
        await store.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: parse options and serve under uvloop."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    uvloop.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
