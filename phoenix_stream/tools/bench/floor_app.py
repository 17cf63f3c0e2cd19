"""Phase (b), the Faust floor: a stock pass-through agent (``async for`` + ``topic.send``).

A separate, tiny ``faust.App`` with the same Tansu profile as ``phoenix_stream.app``
(short session, earliest offsets, no empty-stream wait, ``env={}``), so the only
difference from the pipeline is the agent's shape. Started by the bench runner as::

    faust -A phoenix_stream.tools.bench.floor_app worker -l info

Configured by the ``PHOENIX_BENCH_FLOOR_*`` variables of ``floor_config``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import faust

from phoenix_stream.settings import faust_broker_url
from phoenix_stream.tools.bench.floor_config import read_floor_env


def create_floor_app(environ: Mapping[str, str]) -> tuple[Any, Any, Any]:
    """The floor app, its input topic and its output topic, from ``environ``."""
    conf = read_floor_env(environ)
    partitions = int(conf["partitions"])
    app = faust.App(
        conf["app_id"],
        env={},
        broker=faust_broker_url(conf["kafka_url"]),
        autodiscover=False,
        store="memory://",
        datadir=conf["datadir"],
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        topic_replication_factor=1,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.5,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        table_standby_replicas=0,
        producer_linger=0.005,
        producer_max_batch_size=1_048_576,
        producer_max_request_size=4 * 1_048_576,
        web_enabled=True,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        web_port=int(conf["web_port"]),
        web_in_thread=False,
    )
    topics = [
        app.topic(conf[name], key_serializer="raw", value_serializer="raw", partitions=partitions)
        for name in ("in_topic", "out_topic")
    ]
    return app, topics[0], topics[1]


app, in_topic, out_topic = create_floor_app(os.environ)


@app.agent(in_topic, name="bench.floor")  # type: ignore[untyped-decorator]
async def pass_through(stream: Any) -> None:
    """Stock shape: one ``await topic.send()`` per event, acked by Faust after each."""
    async for key, value in stream.items():
        await out_topic.send(key=key, value=value)
