"""services.json: round trip, absence, and malformed content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phoenix_stream.embedded.state import (
    STATE_FILE,
    ServiceRecord,
    read_records,
    state_lock,
    write_records,
)
from phoenix_stream.exceptions import ServiceError

REDIS = ServiceRecord(
    name="redis", url="redis://127.0.0.1:6390/0", port=6390, pid=1234, log="/x/redis.log"
)
BROKER = ServiceRecord(
    name="broker", url="kafka://127.0.0.1:9093", port=9093, pid=None, log="/x/broker.log"
)


def test_absent_file_reads_as_none(tmp_path: Path) -> None:
    assert read_records(tmp_path) is None


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    write_records(tmp_path, {"redis": REDIS, "broker": BROKER})
    assert read_records(tmp_path) == {"redis": REDIS, "broker": BROKER}


def test_file_is_keyed_by_name_without_repeating_it(tmp_path: Path) -> None:
    write_records(tmp_path / "new", {"redis": REDIS})
    raw = json.loads((tmp_path / "new" / STATE_FILE).read_text())
    assert raw == {"redis": {"url": REDIS.url, "port": 6390, "pid": 1234, "log": "/x/redis.log"}}


def test_stopped_record_keeps_url_and_port() -> None:
    stopped = REDIS.stopped()
    assert stopped.pid is None
    assert (stopped.url, stopped.port, stopped.log) == (REDIS.url, REDIS.port, REDIS.log)


def test_write_replaces_the_previous_content(tmp_path: Path) -> None:
    write_records(tmp_path, {"redis": REDIS, "broker": BROKER})
    write_records(tmp_path, {"redis": REDIS.stopped()})
    assert read_records(tmp_path) == {"redis": REDIS.stopped()}
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # no temporary left behind


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "top level must be an object"),
        ('{"redis": 3}', "'redis' is not an object"),
        ('{"redis": {"url": "u", "pid": 1, "log": "l"}}', "lacks 'port'"),
        ('{"redis": {"url": "u", "port": "1", "pid": 1, "log": "l"}}', "port must be an integer"),
        ('{"redis": {"url": "u", "port": 1, "pid": true, "log": "l"}}', "pid must be an integer"),
        ('{"redis": {"url": 5, "port": 1, "pid": 1, "log": "l"}}', "must be strings"),
    ],
)
def test_malformed_file_raises_service_error(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / STATE_FILE).write_text(content)
    with pytest.raises(ServiceError, match=expected):
        read_records(tmp_path)


def test_state_lock_creates_the_dir_and_can_be_taken_again(tmp_path: Path) -> None:
    state_dir = tmp_path / "a" / "b"
    with state_lock(state_dir):
        write_records(state_dir, {"redis": REDIS})
    with state_lock(state_dir):
        assert read_records(state_dir) == {"redis": REDIS}
