"""Benchmark: ways to write idempotent batches of prediction rows to PostgreSQL.

Compares, for batches of ``--batch`` new rows (and re-writes of stored rows):
  * executemany: one prepared INSERT ... ON CONFLICT DO NOTHING per row, pipelined by
    asyncpg (the baseline; it cannot report how many rows were new),
  * unnest: one INSERT ... SELECT FROM unnest($1::text[], ...) ON CONFLICT DO NOTHING,
  * copy+staging: PredictionSink.write, COPY into a temp table + INSERT ... SELECT.
Each runs in a private schema created and dropped here, rounds in shuffled order, and
reports the median rows/s with its ratio to executemany measured in the same run.

    .venv/bin/python scripts/bench_sink_write.py --dsn postgresql://postgres@127.0.0.1:5432/phoenix

Without ``--dsn`` (or PHOENIX_POSTGRES_DSN) it starts the embedded PostgreSQL from
phoenix_stream.embedded in a temporary state dir and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import orjson

from phoenix_stream.storage.sink import PredictionSink, prediction_records

_EXECUTEMANY = """
INSERT INTO predictions (
    request_id, entity_id, model, version, variant, score, label, features, defaults_used,
    degraded, source, received_at, predicted_at, latency_ms
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, to_timestamp($12), to_timestamp($13),
          $14)
ON CONFLICT (request_id) DO NOTHING
"""
# defaults_used travels as JSON text: unnest() cannot take an array of arrays of any length.
_UNNEST = """
INSERT INTO predictions (
    request_id, entity_id, model, version, variant, score, label, features, defaults_used,
    degraded, source, received_at, predicted_at, latency_ms
)
SELECT r, e, m, v, va, s, l, f::jsonb, ARRAY(SELECT jsonb_array_elements_text(d::jsonb)),
       dg, src, to_timestamp(ra), to_timestamp(pa), lat
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[],
            $7::int[], $8::text[], $9::text[], $10::bool[], $11::text[], $12::float8[],
            $13::float8[], $14::float8[])
     AS t(r, e, m, v, va, s, l, f, d, dg, src, ra, pa, lat)
ON CONFLICT (request_id) DO NOTHING
"""

_ids = itertools.count()
Writer = Callable[[list[dict[str, Any]]], Awaitable[Any]]


def make_rows(n: int, features: int, rng: random.Random) -> list[dict[str, Any]]:
    """``n`` prediction rows with fresh request ids, shaped as the sink agent sends them."""
    now = time.time()
    names = [f"f{i:02d}" for i in range(features)]
    return [
        {
            "request_id": f"bench-{next(_ids)}",
            "entity_id": f"e{rng.randrange(100_000)}",
            "model": "credit",
            "version": rng.choice(["1", "2"]),
            "variant": "champion",
            "score": rng.random(),
            "label": rng.randrange(2),
            "features": {n: rng.gauss(0.0, 1.0) for n in names},
            "defaults_used": names[:1] if rng.random() < 0.1 else [],
            "degraded": False,
            "source": "kafka",
            "received_at": now,
            "predicted_at": now + 0.002,
            "latency_ms": 2.0,
        }
        for _ in range(n)
    ]


async def run(args: argparse.Namespace, dsn: str) -> None:
    """Create a private schema, measure each writer, print a table, drop the schema."""
    rng = random.Random(11)
    schema = f"bench_sink_{os.getpid()}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    settings = {"search_path": schema}
    try:
        sink = PredictionSink(dsn, server_settings=settings)
        await sink.start()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, server_settings=settings)

        async def executemany(rows: list[dict[str, Any]]) -> None:
            records = prediction_records(rows)
            async with pool.acquire() as conn:
                await conn.executemany(_EXECUTEMANY, records)

        async def unnest(rows: list[dict[str, Any]]) -> None:
            records = prediction_records(rows)
            columns = [list(col) for col in zip(*records, strict=True)]
            columns[8] = [orjson.dumps(d).decode() for d in columns[8]]
            async with pool.acquire() as conn:
                await conn.execute(_UNNEST, *columns)

        writers: dict[str, Writer] = {
            "executemany + ON CONFLICT": executemany,
            "unnest INSERT + ON CONFLICT": unnest,
            "COPY staging + INSERT SELECT": sink.write,
        }
        fresh: dict[str, list[float]] = {name: [] for name in writers}
        again: dict[str, list[float]] = {name: [] for name in writers}
        order = list(writers)
        for _ in range(args.rounds):
            rng.shuffle(order)
            for name in order:
                batches = [make_rows(args.batch, args.features, rng) for _ in range(args.batches)]
                fresh[name].append(await _rate(writers[name], batches))
                again[name].append(await _rate(writers[name], batches))  # all duplicates now
        await pool.close()
        await sink.stop()
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
    base_new = statistics.median(fresh["executemany + ON CONFLICT"])
    base_dup = statistics.median(again["executemany + ON CONFLICT"])
    print(
        f"batches of {args.batch} rows x {args.features} features, {args.batches} batches "
        f"x {args.rounds} rounds (median)"
    )
    print(f"{'writer':30} {'new rows/s':>11} {'x base':>7} {'dup rows/s':>11} {'x base':>7}")
    for name in writers:
        new, dup = statistics.median(fresh[name]), statistics.median(again[name])
        print(f"{name:30} {new:11,.0f} {new / base_new:7.2f} {dup:11,.0f} {dup / base_dup:7.2f}")


async def _rate(write: Writer, batches: list[list[dict[str, Any]]]) -> float:
    start = time.perf_counter()
    for rows in batches:
        await write(rows)
    return sum(len(rows) for rows in batches) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, default=20, help="batches per writer per round")
    parser.add_argument("--features", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    # The embedded services, imported and started only when no address is given.
    from phoenix_stream.embedded import given_or_embedded

    with given_or_embedded("postgres", args.dsn or os.environ.get("PHOENIX_POSTGRES_DSN")) as dsn:
        asyncio.run(run(args, dsn))
    return 0


if __name__ == "__main__":
    sys.exit(main())
