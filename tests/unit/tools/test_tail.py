"""``phoenix-stream tail``'s record lines: one JSON line per record, whatever its bytes."""

from __future__ import annotations

import base64

import orjson
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.settings import Settings
from phoenix_stream.streaming.topics import app_topic_specs
from phoenix_stream.tools.tail import TOPICS, record_line


def test_tail_takes_every_topic_of_the_app() -> None:
    assert set(TOPICS) == set(app_topic_specs(Settings()))


def test_a_json_value_prints_as_json() -> None:
    line = record_line("phoenix.predictions", 1, 42, 1_700_000_000_500, b"c001", b'{"score":0.5}')
    assert orjson.loads(line) == {
        "topic": "phoenix.predictions",
        "partition": 1,
        "offset": 42,
        "timestamp": 1_700_000_000.5,
        "key": "c001",
        "value": {"score": 0.5},
    }
    assert "\n" not in line


def test_a_tombstone_and_a_missing_key_print_as_null() -> None:
    assert orjson.loads(record_line("t", 0, 0, None, None, None)) == {
        "topic": "t",
        "partition": 0,
        "offset": 0,
        "key": None,
        "value": None,
    }


@given(key=st.one_of(st.none(), st.binary(max_size=64)), value=st.binary(max_size=256))
def test_any_bytes_print_on_one_line_and_can_be_read_back(key: bytes | None, value: bytes) -> None:
    line = record_line("t", 0, 7, 1, key, value)
    assert "\n" not in line
    printed = orjson.loads(line)
    if key is None:
        assert printed["key"] is None
    elif isinstance(printed["key"], dict):
        assert base64.b64decode(printed["key"]["base64"]) == key
    else:
        assert printed["key"].encode("utf-8") == key
    if "value_base64" in printed:
        assert base64.b64decode(printed["value_base64"]) == value
    else:
        assert printed["value"] == orjson.loads(value)


@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
))  # fmt: skip
def test_a_json_value_comes_back_as_it_was(value: object) -> None:
    assert orjson.loads(record_line("t", 0, 0, None, b"k", orjson.dumps(value)))["value"] == value
