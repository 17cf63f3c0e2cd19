"""The text check shared by every decoder: NUL and lone surrogates found by their path."""

from __future__ import annotations

import orjson
import pytest

from phoenix_stream.messages.text import UnstorableText, unstorable_field
from phoenix_stream.messages.validation import load_json


def test_the_first_unstorable_string_is_named_by_its_path() -> None:
    assert unstorable_field({"a": ["x", {"b": "fine"}], "c": 1.5}) is None
    assert unstorable_field("a\x00")[0] == "$"  # type: ignore[index]
    assert unstorable_field({"a": ["x", {"b": "\x00"}]})[0] == "a.1.b"  # type: ignore[index]
    assert unstorable_field({"f": {"k\x00": 1}})[0] == "f"  # type: ignore[index]
    assert unstorable_field([{"e": "ok"}, {"e": "\ud800"}])[0] == "1.e"  # type: ignore[index]
    deep: object = "\x00"
    for _ in range(2000):  # no recursion limit
        deep = [deep]
    assert unstorable_field(deep) is not None


def test_load_json_refuses_a_nul_escape_but_not_an_escaped_backslash() -> None:
    with pytest.raises(UnstorableText) as info:
        load_json(orjson.dumps({"entity_id": "c1\x00"}))
    assert (info.value.field, info.value.payload) == ("entity_id", {"entity_id": "c1\x00"})
    assert isinstance(info.value, ValueError)  # old callers still treat it as bad input
    assert load_json(b'{"entity_id": "c1\\\\u0000"}') == {"entity_id": "c1\\u0000"}
