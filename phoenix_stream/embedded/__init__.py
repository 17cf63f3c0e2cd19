"""Embedded services for development and tests: Kafka-protocol broker, Redis, PostgreSQL.

Each runs on 127.0.0.1 on a free port with its state under one folder; see ``manager``.
"""

from phoenix_stream.embedded.manager import (
    SERVICE_NAMES,
    ServiceAddresses,
    ServiceStatus,
    read_addresses,
    service_status,
    start_services,
    stop_services,
)

__all__ = [
    "SERVICE_NAMES",
    "ServiceAddresses",
    "ServiceStatus",
    "read_addresses",
    "service_status",
    "start_services",
    "stop_services",
]
