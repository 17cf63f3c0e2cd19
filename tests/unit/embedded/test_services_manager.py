"""Manager behaviour that needs no running service: names, empty state dirs, stale records."""

from __future__ import annotations

from pathlib import Path

import pytest

from phoenix_stream.embedded import (
    SERVICE_NAMES,
    ServiceAddresses,
    read_addresses,
    service_status,
    start_services,
    stop_services,
)
from phoenix_stream.embedded.state import ServiceRecord, read_records, write_records
from phoenix_stream.exceptions import ServiceError


def test_unknown_service_name_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="unknown service"):
        start_services(tmp_path, ["redis", "kafka"])
    assert read_records(tmp_path) is None
    with pytest.raises(ServiceError, match="unknown service"):
        stop_services(tmp_path, ["mysql"])


def test_empty_state_dir(tmp_path: Path) -> None:
    assert read_addresses(tmp_path) is None
    status = service_status(tmp_path)
    assert list(status) == list(SERVICE_NAMES)
    assert all(not s.running and s.pid is None and s.url == "" for s in status.values())
    stop_services(tmp_path)  # nothing recorded: nothing to do
    assert read_records(tmp_path) is None


def test_stale_record_is_reported_not_running_and_stop_clears_its_pid(tmp_path: Path) -> None:
    # A pid above Linux's pid_max stands for a service that died with the machine.
    stale = ServiceRecord(
        name="redis", url="redis://127.0.0.1:6390/0", port=6390, pid=2**22 + 1, log="l"
    )
    write_records(tmp_path, {"redis": stale})
    assert service_status(tmp_path)["redis"].running is False
    assert read_addresses(tmp_path) == ServiceAddresses(
        kafka_url="", redis_url="redis://127.0.0.1:6390/0", postgres_dsn=""
    )
    stop_services(tmp_path, ["redis"])
    assert read_records(tmp_path) == {"redis": stale.stopped()}
