"""FeatureStore against the real embedded Redis: batching, corruption, bulk seed, outage."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from phoenix_stream.embedded import ServiceAddresses, start_services, stop_services
from phoenix_stream.exceptions import FeatureStoreError
from phoenix_stream.features.codec import StoredFeatures
from phoenix_stream.features.store import FeatureStore

log = logging.getLogger(__name__)


@pytest.fixture
async def store(services: ServiceAddresses) -> AsyncIterator[FeatureStore]:
    """A started store with a key prefix of its own, so tests never see each other's keys."""
    prefix = f"test:{uuid.uuid4().hex}:"
    feature_store = FeatureStore(services.redis_url, key_prefix=prefix)
    await feature_store.start()
    try:
        yield feature_store
    finally:
        await feature_store.stop()


@pytest.fixture
async def raw_redis(services: ServiceAddresses) -> AsyncIterator[aioredis.Redis]:
    """A plain client, to look behind the store's back."""
    client = aioredis.from_url(services.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def mget_calls(client: aioredis.Redis) -> int:
    """How many MGET commands the server has executed since it started."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def test_put_then_get_keeps_names_order_and_time(store: FeatureStore) -> None:
    await store.put_many(
        {"a": {"age": 31.0, "income": 52_000.5}, "b": {"age": 60.0}}, updated_at=1_700_000_000.0
    )
    got = await store.get_many(["b", "missing", "a", "b"])
    assert got == [
        StoredFeatures({"age": 60.0}, 1_700_000_000.0),
        None,
        StoredFeatures({"age": 31.0, "income": 52_000.5}, 1_700_000_000.0),
        StoredFeatures({"age": 60.0}, 1_700_000_000.0),
    ]


async def test_put_defaults_updated_at_to_now(store: FeatureStore) -> None:
    before = time.time()
    await store.put_many({"a": {"x": 1.0}})
    (got,) = await store.get_many(["a"])
    assert got is not None and before <= got.updated_at <= time.time()


async def test_values_are_json_under_the_documented_key(
    services: ServiceAddresses, raw_redis: aioredis.Redis
) -> None:
    entity = f"test-{uuid.uuid4().hex}"
    store = FeatureStore(services.redis_url)  # the default prefix phoenix:features:
    await store.start()
    try:
        await store.put_many({entity: {"age": 2.0}}, updated_at=5.0)
        raw = await raw_redis.get(f"phoenix:features:{entity}")
        assert raw == b'{"v":1,"t":5.0,"f":{"age":2.0}}'
    finally:
        await raw_redis.delete(f"phoenix:features:{entity}")
        await store.stop()


async def test_one_mget_per_batch(store: FeatureStore, raw_redis: aioredis.Redis) -> None:
    ids = [f"e{i}" for i in range(512)]
    await store.put_many({i: {"x": float(n)} for n, i in enumerate(ids[::2])}, updated_at=1.0)
    before = await mget_calls(raw_redis)
    got = await store.get_many(ids)
    after = await mget_calls(raw_redis)
    assert after - before == 1
    assert [g is not None for g in got] == [n % 2 == 0 for n in range(512)]
    assert got[2] == StoredFeatures({"x": 1.0}, 1.0)


async def test_corrupt_value_is_none_and_counted_not_an_error(
    store: FeatureStore, raw_redis: aioredis.Redis
) -> None:
    await store.put_many({"good": {"x": 1.0}, "other": {"x": 2.0}}, updated_at=1.0)
    await raw_redis.set(store.key("bad"), b"\x92\x01garbage")
    await raw_redis.set(store.key("nan"), b'{"v":1,"t":1.0,"f":{"x":"NaN"}}')
    got = await store.get_many(["good", "bad", "nan", "other"])
    assert got == [StoredFeatures({"x": 1.0}, 1.0), None, None, StoredFeatures({"x": 2.0}, 1.0)]
    assert store.corrupt_values == 2


async def test_put_refuses_bad_values_before_writing(store: FeatureStore) -> None:
    with pytest.raises(ValueError, match="finite"):
        await store.put_many({"a": {"x": 1.0}, "b": {"x": float("inf")}})
    assert await store.get_many(["a", "b"]) == [None, None]


async def test_seed_100k_entities(store: FeatureStore, raw_redis: aioredis.Redis) -> None:
    n = 100_000
    ids = [f"s{i}" for i in range(n)]
    values = [{"age": float(i % 90), "income": float(i)} for i in range(n)]
    start = time.perf_counter()
    written = await store.seed(ids, values, updated_at=10.0)
    log.info("seeded %d entities in %.2f s", n, time.perf_counter() - start)
    try:
        assert written == n
        got = await store.get_many([ids[0], ids[54_321], ids[-1]])
        assert got == [
            StoredFeatures({"age": 0.0, "income": 0.0}, 10.0),
            StoredFeatures({"age": float(54_321 % 90), "income": 54_321.0}, 10.0),
            StoredFeatures({"age": float((n - 1) % 90), "income": float(n - 1)}, 10.0),
        ]
    finally:
        keys = [store.key(i) for i in ids]
        for start_at in range(0, n, 10_000):
            await raw_redis.unlink(*keys[start_at : start_at + 10_000])


async def test_dead_redis_fails_fast_then_recovers_without_a_new_store(
    store: FeatureStore,
    services: ServiceAddresses,
    services_state_dir: Path,
    managed_services: frozenset[str],
) -> None:
    if "redis" not in managed_services:
        pytest.skip("redis comes from the environment; this test restarts it")
    await store.put_many({"a": {"x": 1.0}}, updated_at=1.0)
    assert await store.get_many(["a"]) == [StoredFeatures({"x": 1.0}, 1.0)]
    await asyncio.to_thread(stop_services, services_state_dir, ["redis"])
    try:
        start = time.perf_counter()
        # A generous bound that only a hang can exceed; the measured time is logged.
        with pytest.raises(FeatureStoreError) as info:
            await asyncio.wait_for(store.get_many(["a"]), timeout=5.0)
        log.info("get_many with Redis down failed in %.3f s", time.perf_counter() - start)
        assert info.value.__cause__ is not None
        assert await asyncio.wait_for(store.ping(), timeout=5.0) is False
        with pytest.raises(FeatureStoreError):
            await asyncio.wait_for(store.put_many({"c": {"x": 3.0}}), timeout=5.0)
    finally:
        again = await asyncio.to_thread(start_services, services_state_dir, ["redis"])
    assert again.redis_url == services.redis_url
    # The same store, its pool's connections stale from before the restart.
    assert await store.ping() is True
    assert await store.get_many(["a"]) == [StoredFeatures({"x": 1.0}, 1.0)]
    await store.put_many({"b": {"x": 2.0}}, updated_at=2.0)
    assert await store.get_many(["b"]) == [StoredFeatures({"x": 2.0}, 2.0)]


async def test_unresponsive_redis_times_out_instead_of_hanging(
    store: FeatureStore, raw_redis: aioredis.Redis
) -> None:
    await store.put_many({"a": {"x": 1.0}}, updated_at=1.0)
    # CLIENT PAUSE: the server accepts connections but answers no command for 2 s.
    await raw_redis.client_pause(2000, all=True)
    start = time.perf_counter()
    with pytest.raises(FeatureStoreError) as info:
        await asyncio.wait_for(store.get_many(["a"]), timeout=5.0)
    log.info("get_many with Redis paused failed in %.3f s", time.perf_counter() - start)
    assert "Timeout" in repr(info.value.__cause__)
    await raw_redis.client_unpause()
    assert await store.get_many(["a"]) == [StoredFeatures({"x": 1.0}, 1.0)]
