"""Session fixtures shared by every test: the embedded services, and the integration marker.

The broker, Redis and PostgreSQL are started once per test session under a temporary
state dir and stopped at the end, also when tests fail. A service whose address is set in
the environment (PHOENIX_KAFKA_URL, PHOENIX_REDIS_URL, PHOENIX_POSTGRES_DSN) is used as it
is and not started.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from phoenix_stream.embedded import ServiceAddresses, start_services, stop_services

_INTEGRATION_DIR = Path(__file__).parent / "integration"

# service name -> (environment variable, ServiceAddresses field)
_OVERRIDES = {
    "broker": ("PHOENIX_KAFKA_URL", "kafka_url"),
    "redis": ("PHOENIX_REDIS_URL", "redis_url"),
    "postgres": ("PHOENIX_POSTGRES_DSN", "postgres_dsn"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration with ``integration`` (select with -m)."""
    for item in items:
        if item.path.is_relative_to(_INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def services_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state dir of this session's embedded services (services.json, logs, data)."""
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def managed_services() -> frozenset[str]:
    """Names of the services this session starts itself (not overridden by the environment).

    Only these can be stopped and restarted by a test (outage simulations).
    """
    return frozenset(name for name, (var, _) in _OVERRIDES.items() if not os.environ.get(var))


@pytest.fixture(scope="session")
def services(
    services_state_dir: Path, managed_services: frozenset[str]
) -> Iterator[ServiceAddresses]:
    """Addresses of the broker, Redis and PostgreSQL for this test session."""
    names = [name for name in _OVERRIDES if name in managed_services]
    try:
        addresses = (
            start_services(services_state_dir, names)
            if names
            else ServiceAddresses(kafka_url="", redis_url="", postgres_dsn="")
        )
        for name, (var, field) in _OVERRIDES.items():
            if name not in managed_services:
                addresses = replace(addresses, **{field: os.environ[var]})
        yield addresses
    finally:
        # Also after a failed start: whatever did come up is stopped.
        if names:
            stop_services(services_state_dir, names)
