"""Seeding the online feature store with the demo customers' profiles."""

from __future__ import annotations

from phoenix_stream.features.store import FeatureStore
from phoenix_stream.training.datagen import PROFILE_FEATURES, entity_id_for, profiles


async def seed_feature_store(redis_url: str, entities: int, *, chunk: int = 5000) -> int:
    """Write the profiles of entities ``c000000``.. into Redis; returns how many."""
    store = FeatureStore(redis_url)
    written = 0
    await store.start()
    try:
        for start in range(0, entities, chunk):
            ids = [entity_id_for(i) for i in range(start, min(start + chunk, entities))]
            rows = profiles(ids).tolist()
            values = [dict(zip(PROFILE_FEATURES, row, strict=True)) for row in rows]
            written += await store.seed(ids, values, chunk=chunk)
    finally:
        await store.stop()
    return written
