"""Embedded services for development and tests: a Kafka broker, Redis, PostgreSQL.

Each runs on 127.0.0.1 on a free port with its state under one folder; see ``manager``.
"""

from phoenix_stream.embedded.manager import (
    BROKER_KINDS,
    SERVICE_NAMES,
    ServiceAddresses,
    ServiceStatus,
    given_or_embedded,
    read_addresses,
    service_status,
    start_services,
    stop_services,
)

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
