"""The online feature store: one packed Redis value per entity, read with one MGET per batch.

Key ``<key_prefix><entity_id>`` (default ``phoenix:features:<entity_id>``) holds the entity's
named features and their update time, encoded by :mod:`phoenix_stream.features.codec`.
Every call is bounded by short socket timeouts, and a read as a whole by twice
``timeout_s`` (one attempt plus the one retry that reconnects a stale connection): a dead
or hung Redis fails fast with FeatureStoreError, so the caller can serve with defaults
instead of hanging (docs/architecture.md section 7).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from mode import Service
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from phoenix_stream.exceptions import FeatureStoreError
from phoenix_stream.features.codec import StoredFeatures, decode_features, encode_features
from phoenix_stream.redaction import redact

__all__ = ["FeatureStore", "StoredFeatures"]

log = logging.getLogger(__name__)

DEFAULT_KEY_PREFIX = "phoenix:features:"
_MSET_CHUNK = 1000  # key/value pairs per MSET: keeps each command's buffer small


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class FeatureStore(Service):
    """Redis online feature store; every call is bounded by ``timeout_s`` (seconds) per attempt.

    ``corrupt_values`` counts values that could not be decoded (returned as None).
    """

    def __init__(
        self,
        redis_url: str,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        timeout_s: float = 0.25,
        *,
        max_connections: int = 32,
        **kwargs: Any,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self.corrupt_values = 0
        self._client: Redis | None = None
        super().__init__(**kwargs)

    def _new_client(self, timeout_s: float) -> Redis:
        # One immediate retry on a connection error: after a Redis restart each pooled
        # connection is stale once, and the retry reconnects it without failing the batch.
        # No backoff and a single retry keep a dead Redis under ~2x the timeout.
        return Redis.from_url(
            self.redis_url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
            max_connections=self.max_connections,
            decode_responses=False,
        )

    async def on_start(self) -> None:
        """Open the client (no I/O); warn if Redis is unreachable, without failing start."""
        self._client = self._new_client(self.timeout_s)
        if not await self.ping():
            log.warning(
                "Redis at %s is not reachable; features will fail until it is",
                redact(self.redis_url),
            )

    async def on_stop(self) -> None:
        """Close the client and its connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> Redis:
        """The open Redis client; FeatureStoreError if the service is not started."""
        if self._client is None:
            raise FeatureStoreError("FeatureStore is not started")
        return self._client

    def key(self, entity_id: str) -> str:
        """Return the Redis key of ``entity_id``."""
        return self.key_prefix + entity_id

    async def get_many(self, entity_ids: Sequence[str]) -> list[StoredFeatures | None]:
        """Read the features of ``entity_ids`` with one MGET; None where missing or corrupt.

        Raises FeatureStoreError when Redis fails or does not answer within twice the
        timeout (seconds), whatever the socket does.
        """
        if not entity_ids:
            return []
        prefix = self.key_prefix
        keys = [prefix + entity_id for entity_id in entity_ids]
        try:
            # decode_responses=False: values come back as bytes, never str.
            async with asyncio.timeout(2 * self.timeout_s):
                raws = cast("list[bytes | None]", await self.client.mget(keys))
        except (RedisError, OSError) as exc:  # TimeoutError is an OSError
            raise FeatureStoreError(
                redact(f"MGET of {len(keys)} keys from {self.redis_url} failed: {exc!r}")
            ) from exc
        out: list[StoredFeatures | None] = []
        for key, raw in zip(keys, raws, strict=True):
            if raw is None:
                out.append(None)
                continue
            try:
                out.append(decode_features(raw))
            except ValueError as exc:
                out.append(None)
                self._count_corrupt(key, exc)
        return out

    def _count_corrupt(self, key: str, exc: ValueError) -> None:
        self.corrupt_values += 1
        # Once, then debug only: a corrupt keyspace would otherwise flood the log per record.
        level = logging.WARNING if self.corrupt_values == 1 else logging.DEBUG
        log.log(level, "Corrupt feature value at %s (%s); treated as missing", key, exc)

    async def put_many(
        self,
        features: Mapping[str, Mapping[str, float]],
        updated_at: float | None = None,
    ) -> None:
        """Write features per entity (pipelined MSETs, one round trip); ``updated_at`` in
        epoch seconds, now by default. ValueError on a bad value, before anything is written.
        """
        await self._put(self.client, features, updated_at)

    async def _put(
        self,
        client: Redis,
        features: Mapping[str, Mapping[str, float]],
        updated_at: float | None,
    ) -> None:
        if not features:
            return
        stamp = time.time() if updated_at is None else updated_at
        prefix = self.key_prefix
        encoded = [
            (prefix + entity_id, encode_features(values, stamp))
            for entity_id, values in features.items()
        ]
        try:
            async with client.pipeline(transaction=False) as pipe:
                for chunk in _chunks(encoded, _MSET_CHUNK):
                    pipe.mset(dict(chunk))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise FeatureStoreError(
                redact(f"MSET of {len(encoded)} keys to {self.redis_url} failed: {exc!r}")
            ) from exc

    async def seed(
        self,
        entity_ids: Sequence[str],
        values: Sequence[Mapping[str, float]],
        chunk: int = 5000,
        *,
        updated_at: float | None = None,
        timeout_s: float = 10.0,
    ) -> int:
        """Bulk-write ``values[i]`` for ``entity_ids[i]`` in pipelines of ``chunk`` entities;
        returns the number written. Uses its own client with a bulk ``timeout_s`` (seconds).
        """
        if len(entity_ids) != len(values):
            raise ValueError(f"{len(entity_ids)} entity ids but {len(values)} value maps")
        if chunk <= 0:
            raise ValueError(f"chunk must be > 0, got {chunk}")
        stamp = time.time() if updated_at is None else updated_at
        # The serving client's timeout is tuned for small MGETs; a 5000-key pipeline on a
        # busy 2-core machine can exceed it, so bulk loads get their own patient client.
        client = self._new_client(timeout_s)
        written = 0
        try:
            for start in range(0, len(entity_ids), chunk):
                batch = dict(
                    zip(
                        entity_ids[start : start + chunk],
                        values[start : start + chunk],
                        strict=True,
                    )
                )
                await self._put(client, batch, stamp)
                written += len(batch)
        finally:
            await client.aclose()
        return written

    async def ping(self) -> bool:
        """True if Redis answers PING within the timeout; False on any failure."""
        client = self._client
        if client is None:
            return False
        try:
            return bool(await client.ping())
        except (RedisError, OSError) as exc:
            log.debug("Redis ping failed: %r", exc)
            return False
