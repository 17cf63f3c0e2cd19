"""The demo's line naming its services shows no credential (it printed the raw DSN)."""

from __future__ import annotations

from phoenix_stream.settings import Settings
from phoenix_stream.tools.demo import addresses_line


def test_the_demo_prints_the_addresses_without_their_passwords() -> None:
    settings = Settings(
        redis_url="redis://:redis-pw-1@cache:6379/0",
        postgres_dsn="postgresql://app:pg-pw-1@db:5432/phoenix?sslpassword=key-pw-1",
    )
    line = addresses_line(settings)
    assert line == (
        "  kafka kafka://127.0.0.1:9092  redis redis://:***@cache:6379/0  "
        "postgres postgresql://app:***@db:5432/phoenix?sslpassword=***"
    )
