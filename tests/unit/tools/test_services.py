"""Which services a tool runs against: the environment's, or its own (started for real in
tests/integration/test_services.py and by the demo, bench and scenario tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from phoenix_stream.settings import Settings
from phoenix_stream.tools.services import running_services, services_given

URLS = {
    "PHOENIX_KAFKA_URL": "kafka://127.0.0.1:1",
    "PHOENIX_REDIS_URL": "redis://127.0.0.1:2/0",
    "PHOENIX_POSTGRES_DSN": "postgresql://u@127.0.0.1:3/db",
}


def test_the_services_are_given_only_when_all_three_urls_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in URLS:
        monkeypatch.delenv(name, raising=False)
    for name, url in list(URLS.items())[:-1]:
        monkeypatch.setenv(name, url)
        assert not services_given()
    monkeypatch.setenv("PHOENIX_POSTGRES_DSN", URLS["PHOENIX_POSTGRES_DSN"])
    assert services_given()


async def test_given_services_are_used_as_they_are(tmp_path: Path) -> None:
    settings = Settings(kafka_url=URLS["PHOENIX_KAFKA_URL"])
    async with running_services(settings, tmp_path / "services", own=False) as used:
        assert used is settings
    assert not (tmp_path / "services").exists()  # nothing was started
