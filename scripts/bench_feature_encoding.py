"""Benchmark: Redis feature value encodings read with one MGET per batch.

Writes the same entities under one key prefix per encoding, then reads random batches of
``--batch`` keys with a single MGET and decodes each value into named features, round-robin
across encodings in a shuffled order for ``--rounds`` rounds (so machine noise hits all
alike). Reports the
median keys/s per encoding and its ratio to JSON measured in the same run.

    .venv/bin/python scripts/bench_feature_encoding.py --redis-url redis://127.0.0.1:6379/0

Without ``--redis-url`` (or PHOENIX_REDIS_URL) it starts the embedded Redis from
phoenix_stream.embedded in a temporary state dir and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import struct
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import msgpack
import orjson
from redis.asyncio import Redis

from phoenix_stream.features.codec import (
    StoredFeatures,
    check_values,
    decode_features,
    encode_features,
)
from phoenix_stream.features.store import FeatureStore

Decoder = Callable[[bytes], Any]


# --- msgpack map: [version, updated_at, {name: value}] ------------------------------------
def encode_msgpack(values: Mapping[str, float], updated_at: float) -> bytes:
    """msgpack array holding the version, update time and a name->value map."""
    packed: bytes = msgpack.packb((1, updated_at, dict(values)), use_bin_type=True)
    return packed


def decode_msgpack(raw: bytes) -> StoredFeatures:
    """Decode and check types exactly as the JSON codec does."""
    obj = msgpack.unpackb(raw, use_list=False)
    if type(obj) is not tuple or len(obj) != 3 or obj[0] != 1:
        raise ValueError("bad layout")
    values = obj[2]
    if type(values) is not dict:
        raise ValueError("bad layout")
    check_values(values)
    return StoredFeatures(values=values, updated_at=float(obj[1]))


def decode_stdlib_json(raw: bytes) -> StoredFeatures:
    """The chosen layout read by the standard library's json, same checks."""
    obj = json.loads(raw)
    values = obj["f"]
    if obj["v"] != 1 or type(values) is not dict:
        raise ValueError("bad layout")
    check_values(values)
    return StoredFeatures(values=values, updated_at=float(obj["t"]))


# --- packed float32 with a schema id: header <schema_id u32, updated_at f64> + floats ------
_HEADER = struct.Struct("<Id")


@dataclass(frozen=True)
class Float32Codec:
    """Packed float32 vector; names live in a schema registry keyed by ``schema_id``."""

    schema_id: int
    names: tuple[str, ...]

    def encode(self, values: Mapping[str, float], updated_at: float) -> bytes:
        """Header plus one float32 per schema name, in schema order."""
        body = struct.pack(f"<{len(self.names)}f", *(values[n] for n in self.names))
        return _HEADER.pack(self.schema_id, updated_at) + body

    def decode_named(self, raw: bytes) -> StoredFeatures:
        """Back to named features (what the enrich step needs for any model's input order)."""
        schema_id, stamp = _HEADER.unpack_from(raw)
        if schema_id != self.schema_id:
            raise ValueError("unknown schema")
        floats = struct.unpack_from(f"<{len(self.names)}f", raw, _HEADER.size)
        if not math.isfinite(sum(floats)):  # the same finiteness check as the other codecs
            raise ValueError("non-finite value")
        return StoredFeatures(values=dict(zip(self.names, floats, strict=True)), updated_at=stamp)

    def decode_vector(self, raw: bytes) -> tuple[float, tuple[float, ...]]:
        """Vector only, no names: the ceiling of this encoding."""
        schema_id, stamp = _HEADER.unpack_from(raw)
        if schema_id != self.schema_id:
            raise ValueError("unknown schema")
        return stamp, struct.unpack_from(f"<{len(self.names)}f", raw, _HEADER.size)


def _decode_nothing(raw: bytes) -> bytes:
    return raw


async def _measure(
    client: Redis, keys: list[str], batch: int, decode: Decoder, calls: int, rng: random.Random
) -> float:
    """Keys/s of ``calls`` MGETs of ``batch`` random keys, each value decoded."""
    batches = [rng.sample(keys, batch) for _ in range(calls)]
    start = time.perf_counter()
    for chosen in batches:
        raws = cast("list[bytes]", await client.mget(chosen))
        for raw in raws:
            decode(raw)
    return calls * batch / (time.perf_counter() - start)


async def _measure_store(
    store: FeatureStore, ids: list[str], batch: int, calls: int, rng: random.Random
) -> float:
    batches = [rng.sample(ids, batch) for _ in range(calls)]
    start = time.perf_counter()
    for chosen in batches:
        await store.get_many(chosen)
    return calls * batch / (time.perf_counter() - start)


async def run(args: argparse.Namespace, redis_url: str) -> None:
    """Load the keyspaces, measure, print a table."""
    rng = random.Random(7)
    names = tuple(f"f{i:02d}" for i in range(args.features))
    ids = [f"e{i}" for i in range(args.entities)]
    rows = [{n: rng.gauss(0.0, 1.0) for n in names} for _ in ids]
    now = time.time()
    f32 = Float32Codec(schema_id=1, names=names)
    encoders: dict[str, Callable[[Mapping[str, float], float], bytes]] = {
        "json": encode_features,
        "msgpack": encode_msgpack,
        "float32": f32.encode,
    }
    client = Redis.from_url(redis_url, socket_timeout=5.0)
    try:
        sizes: dict[str, float] = {}
        for enc_name, encode in encoders.items():
            values = [encode(row, now) for row in rows]
            sizes[enc_name] = statistics.fmean(len(v) for v in values)
            prefix = f"bench:{enc_name}:"
            for start in range(0, len(ids), 5000):
                await client.mset(
                    {
                        prefix + i: v
                        for i, v in zip(ids[start : start + 5000], values[start:], strict=False)
                    }
                )
        keyspace = {name: [f"bench:{name}:{i}" for i in ids] for name in encoders}
        cases: dict[str, tuple[str, Decoder]] = {
            "json, orjson (chosen codec)": ("json", decode_features),
            "json, stdlib json": ("json", decode_stdlib_json),
            "msgpack map": ("msgpack", decode_msgpack),
            "json, orjson.loads, no checks": ("json", orjson.loads),
            "msgpack map, unpackb, no checks": ("msgpack", msgpack.unpackb),
            "float32+schema, named": ("float32", f32.decode_named),
            "float32+schema, vector": ("float32", f32.decode_vector),
            "MGET only, no decode (json)": ("json", _decode_nothing),
        }
        store = FeatureStore(redis_url, key_prefix="bench:json:", timeout_s=5.0)
        await store.start()
        results: dict[str, list[float]] = {name: [] for name in [*cases, "FeatureStore.get_many"]}
        order = [*cases, "FeatureStore.get_many"]
        for _ in range(args.rounds):
            rng.shuffle(order)  # no case always runs first (cold) or right after another
            for case in order:
                if case in cases:
                    enc_name, decode = cases[case]
                    rate = await _measure(
                        client, keyspace[enc_name], args.batch, decode, args.calls, rng
                    )
                else:
                    rate = await _measure_store(store, ids, args.batch, args.calls, rng)
                results[case].append(rate)
        await store.stop()
        for enc_name in encoders:
            await client.delete(*keyspace[enc_name])
    finally:
        await client.aclose()
    baseline = statistics.median(results["json, orjson (chosen codec)"])
    print(
        f"{args.entities} entities x {args.features} features, MGET of {args.batch} keys, "
        f"{args.calls} calls x {args.rounds} rounds (median); value bytes: "
        + ", ".join(f"{k} {v:.0f}" for k, v in sizes.items())
    )
    print(f"{'case':34} {'keys/s':>10} {'x json':>7}")
    for case, rates in results.items():
        median = statistics.median(rates)
        print(f"{case:34} {median:10,.0f} {median / baseline:7.2f}")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--entities", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=12)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--calls", type=int, default=100, help="MGETs per case per round")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    # The embedded services, imported and started only when no address is given.
    from phoenix_stream.embedded import given_or_embedded

    with given_or_embedded("redis", args.redis_url or os.environ.get("PHOENIX_REDIS_URL")) as url:
        asyncio.run(run(args, url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
