"""Session fixtures shared by every test: the embedded services, and the integration marker.

The broker, Redis and PostgreSQL are started once per test session under a temporary
state dir and stopped at the end, also when tests fail. A service whose address is set in
the environment (PHOENIX_KAFKA_URL, PHOENIX_REDIS_URL, PHOENIX_POSTGRES_DSN) is used as it
is and not started.

Brokers: a test runs on Tansu unless marked ``@pytest.mark.brokers("tansu", "kafka")``
(or ``("kafka",)``): it then runs once on each, its id saying which (``[kafka]``). The
Apache Kafka node starts once per session, in its own state dir, beside Tansu.
``PHOENIX_TEST_BROKERS=tansu`` (a machine without a JDK) leaves the Kafka runs out, as
skips that say so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from phoenix_stream.embedded import (
    BROKER_KINDS,
    ServiceAddresses,
    start_services,
    stop_services,
)
from phoenix_stream.embedded import process as embedded_process

# Property tests check what is generated, never how fast: a busy machine (CI, or a test
# beside a busy loop) must not fail them by Hypothesis's timing checks. Tests that set
# their own settings inherit these.
settings.register_profile("phoenix", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("phoenix")

_INTEGRATION_DIR = Path(__file__).parent / "integration"
_BACKING = ("redis", "postgres")

# service name -> (environment variable, ServiceAddresses field)
_OVERRIDES = {
    "broker": ("PHOENIX_KAFKA_URL", "kafka_url"),
    "redis": ("PHOENIX_REDIS_URL", "redis_url"),
    "postgres": ("PHOENIX_POSTGRES_DSN", "postgres_dsn"),
}


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``brokers`` marker (``--strict-markers`` refuses unknown ones)."""
    config.addinivalue_line(
        "markers", "brokers(*kinds): run the test on each named broker (tansu, kafka)"
    )
    config.addinivalue_line(
        "markers", "solo: a scenario with wall-clock targets, run with no other test beside it"
    )
    _ports_of_this_process()


def _ports_of_this_process() -> None:
    """Under pytest-xdist, this process's own range of ports for the services and workers
    it starts (below Linux's ephemeral range, 32768 and up, where clients' ports come from):
    the OS could hand a port just released here to the other process before our child
    binds it, and our tests would then talk to its worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    width = 12_000 // count
    low = 20_000 + int(worker[2:]) * width
    embedded_process.port_range = range(low, low + width)


def _enabled_brokers() -> tuple[str, ...]:
    raw = os.environ.get("PHOENIX_TEST_BROKERS", "")
    chosen = tuple(part.strip() for part in raw.split(",") if part.strip()) or BROKER_KINDS
    unknown = set(chosen) - set(BROKER_KINDS)
    if unknown:
        raise pytest.UsageError(f"PHOENIX_TEST_BROKERS: unknown broker(s) {sorted(unknown)}")
    return chosen


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that needs a broker on the brokers its ``brokers`` marker names."""
    if "broker_kind" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("brokers")
    kinds = tuple(marker.args) if marker is not None else ("tansu",)
    enabled = _enabled_brokers()
    params = [
        kind
        if kind in enabled
        else pytest.param(kind, marks=pytest.mark.skip(reason=f"PHOENIX_TEST_BROKERS={kind} off"))
        for kind in kinds
    ]
    metafunc.parametrize("broker_kind", params, indirect=True, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration with ``integration`` (select with -m), and
    the scenario forms with wall-clock targets ``solo``."""
    for item in items:
        if item.path.is_relative_to(_INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)
            if item.path.name in _SOLO_MODULES:
                item.add_marker(pytest.mark.solo)


# Scenario forms that measure the product against wall-clock targets (detection within
# windows of 3 s, a rollout decided under a request rate, a stall under a busy loop, the
# bench's figures): scripts/test.sh runs them alone, before the rest of the tier runs on
# two processes. Beside another test process, the drift scenario detected in 12 windows
# instead of 2 and the rollout scenario saw requests fail (2026-12-03).
_SOLO_MODULES = frozenset(
    {"test_drift_scenario.py", "test_rollout.py", "test_stall.py", "test_bench_smoke.py"}
)


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
def broker_kind(request: pytest.FixtureRequest) -> str:
    """The broker this test runs on: ``tansu`` or ``kafka`` (set by the ``brokers`` marker)."""
    kind: str = getattr(request, "param", "tansu")
    return kind


@pytest.fixture(scope="session")
def backing_services(
    services_state_dir: Path, managed_services: frozenset[str]
) -> Iterator[ServiceAddresses]:
    """Redis and PostgreSQL for this test session (one of each, whatever the broker)."""
    names = [name for name in _BACKING if name in managed_services]
    try:
        addresses = (
            start_services(services_state_dir, names)
            if names
            else ServiceAddresses(kafka_url="", redis_url="", postgres_dsn="")
        )
        yield _with_overrides(addresses, managed_services)
    finally:
        if names:
            stop_services(services_state_dir, names)


@pytest.fixture(scope="session")
def broker_state_dir(
    services_state_dir: Path, broker_kind: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The state dir of this broker (Tansu shares the session's; Kafka has its own)."""
    if broker_kind == "tansu":
        return services_state_dir
    return tmp_path_factory.mktemp(f"services-{broker_kind}")


@pytest.fixture(scope="session")
def services(
    backing_services: ServiceAddresses,
    broker_kind: str,
    broker_state_dir: Path,
    managed_services: frozenset[str],
) -> Iterator[ServiceAddresses]:
    """Addresses of the broker, Redis and PostgreSQL for this test session."""
    if "broker" not in managed_services:
        yield replace(backing_services, kafka_url=os.environ["PHOENIX_KAFKA_URL"])
        return
    try:
        broker = start_services(broker_state_dir, ["broker"], broker=broker_kind)
        yield replace(backing_services, kafka_url=broker.kafka_url)
    finally:
        # Also after a failed start: whatever did come up is stopped.
        stop_services(broker_state_dir, ["broker"])


def _with_overrides(
    addresses: ServiceAddresses, managed_services: frozenset[str]
) -> ServiceAddresses:
    for name, (var, field) in _OVERRIDES.items():
        if name not in managed_services:
            addresses = replace(addresses, **{field: os.environ[var]})
    return addresses
