"""FeatureStore without Redis: construction, keys, and errors before start.

Reads and writes against a real Redis are in tests/integration/test_feature_store.py.
"""

from __future__ import annotations

import asyncio

import pytest

from phoenix_stream.exceptions import FeatureStoreError
from phoenix_stream.features.store import FeatureStore


def test_key_uses_prefix() -> None:
    assert FeatureStore("redis://127.0.0.1:1/0").key("cust-7") == "phoenix:features:cust-7"
    assert FeatureStore("redis://127.0.0.1:1/0", key_prefix="t:").key("x") == "t:x"


def test_constructor_opens_nothing() -> None:
    store = FeatureStore("redis://127.0.0.1:1/0")
    with pytest.raises(FeatureStoreError, match="not started"):
        _ = store.client


@pytest.mark.parametrize("timeout_s", [0.0, -1.0])
def test_timeout_must_be_positive(timeout_s: float) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        FeatureStore("redis://127.0.0.1:1/0", timeout_s=timeout_s)


async def test_calls_before_start() -> None:
    store = FeatureStore("redis://127.0.0.1:1/0")
    assert await store.get_many([]) == []
    assert await store.ping() is False
    with pytest.raises(FeatureStoreError, match="not started"):
        await store.get_many(["a"])
    with pytest.raises(FeatureStoreError, match="not started"):
        await store.put_many({"a": {"x": 1.0}})


async def test_seed_checks_arguments_before_connecting() -> None:
    store = FeatureStore("redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="2 entity ids but 1"):
        await store.seed(["a", "b"], [{"x": 1.0}])
    with pytest.raises(ValueError, match="chunk"):
        await store.seed(["a"], [{"x": 1.0}], chunk=0)


async def test_a_redis_that_accepts_but_never_answers_fails_the_read() -> None:
    # A silent listener stands in for a hung Redis (real outages: tests/integration).
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = FeatureStore(f"redis://127.0.0.1:{port}/0", timeout_s=0.05)
    await store.start()
    try:
        with pytest.raises(FeatureStoreError):
            await asyncio.wait_for(store.get_many(["a", "b"]), timeout=30)
    finally:
        await store.stop()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
