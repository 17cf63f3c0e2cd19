"""``phoenix-stream tail`` on both brokers: what a topic holds, then only what arrives.

The records already there go in batches of several (a lingering producer), where Tansu
reports a partition's end short: "from now" must still print none of them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from phoenix_stream.embedded.manager import ServiceAddresses
from phoenix_stream.testing import create_topic

OLD = 12
TIMEOUT_S = 90.0


def _env(services: ServiceAddresses, prefix: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PHOENIX_KAFKA_URL": services.kafka_url,
        "PHOENIX_TOPIC_PREFIX": prefix,
        "PHOENIX_STATE_DIR": str(tmp_path),
    }


async def _tail(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "phoenix_stream",
        "tail",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.brokers("tansu", "kafka")
async def test_tail_prints_the_topic_then_only_what_arrives(
    services: ServiceAddresses, tmp_path: Path
) -> None:
    prefix = f"tail{uuid.uuid4().hex[:8]}."
    bootstrap = services.kafka_url.removeprefix("kafka://")
    topic = f"{prefix}predictions"
    await create_topic(bootstrap, topic, partitions=2)
    env = _env(services, prefix, tmp_path)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, orjson.dumps({"old": i}), key=b"k%d" % i, partition=i % 2)
            for i in range(OLD)
        ]
        sent.append(await producer.send(topic, b"\xff not json", partition=0))
        await asyncio.gather(*sent)

        everything = await _tail(env, "predictions", "--from-beginning", "--limit", str(OLD + 1))
        out, err = await asyncio.wait_for(everything.communicate(), TIMEOUT_S)
        assert everything.returncode == 0, err.decode()
        lines = [orjson.loads(line) for line in out.decode().splitlines()]
        assert sorted(line["value"]["old"] for line in lines if "value" in line) == list(range(OLD))
        assert [line["value_base64"] for line in lines if "value_base64" in line] == [
            "/yBub3QganNvbg=="
        ]
        assert {line["topic"] for line in lines} == {topic}

        # From now on: send new records until the tail has printed one; it must be new.
        arriving = await _tail(env, "predictions", "--limit", "1")
        deadline = time.monotonic() + TIMEOUT_S
        n = 0
        while arriving.returncode is None and time.monotonic() < deadline:
            await (await producer.send(topic, orjson.dumps({"new": n}), partition=n % 2))
            n += 1
            try:
                await asyncio.wait_for(asyncio.shield(arriving.wait()), 0.5)
            except TimeoutError:
                pass
        out, err = await asyncio.wait_for(arriving.communicate(), TIMEOUT_S)
        assert arriving.returncode == 0, err.decode()
        (line,) = out.decode().splitlines()
        assert "new" in orjson.loads(line)["value"], line
    finally:
        await producer.stop()


async def test_tail_of_a_topic_nobody_created_says_so(
    services: ServiceAddresses, tmp_path: Path
) -> None:
    env = _env(services, f"absent{uuid.uuid4().hex[:8]}.", tmp_path)
    process = await _tail(env, "dead-letters", "--limit", "1")
    _, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    assert process.returncode == 1
    assert err.decode().splitlines()[-1].startswith("error: no topic 'absent")
    assert "Traceback" not in err.decode()
