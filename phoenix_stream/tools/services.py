"""The services a tool (demo, bench, scenarios) runs against: given, or its own embedded ones."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from phoenix_stream.embedded import SERVICE_NAMES, start_services, stop_services
from phoenix_stream.settings import ENV, Settings

_URLS = ("kafka_url", "redis_url", "postgres_dsn")


def services_given() -> bool:
    """True when all three service URLs are set in the environment (use those)."""
    return all(os.environ.get(ENV[name]) for name in _URLS)


@asynccontextmanager
async def running_services(
    settings: Settings, services_dir: Path, *, own: bool, broker: str = "tansu"
) -> AsyncIterator[Settings]:
    """``settings`` pointing at running services.

    With ``own``, the embedded services (``broker``: tansu or kafka) are started under
    ``services_dir`` and stopped on the way out, whatever happened inside; otherwise
    ``settings`` is used as it is.
    """
    if not own:
        yield settings
        return
    try:  # a start that fails half-way stops what it started too
        addresses = await asyncio.to_thread(
            start_services, services_dir, SERVICE_NAMES, broker=broker
        )
        yield settings.with_overrides(
            kafka_url=addresses.kafka_url,
            redis_url=addresses.redis_url,
            postgres_dsn=addresses.postgres_dsn,
        )
    finally:
        await asyncio.to_thread(stop_services, services_dir, SERVICE_NAMES)
