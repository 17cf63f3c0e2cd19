"""The envelope every outside decoder shares: one item or a list, each judged alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.validation import (
    MAX_ID_LENGTH,
    Envelope,
    Rejected,
    decode_items,
    decode_json,
    identifier,
)

ENVELOPE = Envelope(
    invalid_kind="invalid_thing",
    empty="empty list",
    over_limit="list holds {count} things, over the limit of {limit}",
)


@dataclass(frozen=True)
class Thing:
    value: int
    batch_index: int | None


def parse(item: Any, index: int | None) -> Thing:
    """A toy item: ``{"value": int}``."""
    if not isinstance(item, dict) or type(item.get("value")) is not int:
        raise ValidationError("value", "must be an integer")
    return Thing(item["value"], index)


def decode(raw: bytes | None, max_bytes: int = 10_000, max_batch: int = 5) -> list[Any]:
    return decode_items(
        raw,
        max_bytes=max_bytes,
        max_batch=max_batch,
        envelope=ENVELOPE,
        parse=parse,
        reject=Rejected,
    )


def test_one_item_and_a_list_with_one_bad_item() -> None:
    assert decode(b'{"value": 3}') == [Thing(3, None)]
    good, bad = decode(b'[{"value": 1}, {"value": "x"}]')
    assert good == Thing(1, 0)
    assert bad == Rejected(
        "invalid_thing", "value: must be an integer", "value", b'{"value":"x"}', 1
    )


@pytest.mark.parametrize(
    ("raw", "kind", "error"),
    [
        (None, "invalid_json", "record has no value"),
        (b"x" * 10_001, "too_large", "record is 10001 bytes, over the limit of 10000"),
        (b"{", "invalid_json", "invalid JSON: "),
        (b"[]", "invalid_thing", "empty list"),
        (b"[1,2,3,4,5,6]", "batch_too_large", "list holds 6 things, over the limit of 5"),
        (b'{"value": "\\u0000"}', "invalid_thing", "value: must not contain NUL"),
    ],
)
def test_the_whole_record_refused(raw: bytes | None, kind: str, error: str) -> None:
    [refused] = decode(raw)
    assert isinstance(refused, Rejected)
    assert (refused.kind, refused.batch_index) == (kind, None)
    assert refused.error.startswith(error)
    assert refused.original == (raw or b"")


def test_a_nul_in_one_list_item_refuses_that_item_alone() -> None:
    good, bad = decode(b'[{"value": 1}, {"value": 2, "note": "a\\u0000b"}]')
    assert good == Thing(1, 0)
    assert isinstance(bad, Rejected) and (bad.kind, bad.field, bad.batch_index) == (
        "invalid_thing",
        "note",
        1,
    )


INT64 = st.integers(-(2**63), 2**63 - 1)  # what orjson can encode
JSON = st.recursive(
    st.none() | st.booleans() | INT64 | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


@given(st.binary(max_size=200) | JSON.map(orjson.dumps))
def test_any_bytes_give_one_result_per_item_and_never_raise(raw: bytes) -> None:
    results = decode(raw)
    assert results
    for result in results:
        assert isinstance(result, Thing | Rejected)
        if isinstance(result, Rejected):
            assert result.kind in {"invalid_json", "too_large", "batch_too_large", "invalid_thing"}
    if len(results) > 1:
        assert [r.batch_index for r in results] == list(range(len(results)))


@pytest.mark.parametrize(
    ("value", "forbid_nul", "message"),
    [
        (None, False, "is required"),
        (2**64, False, "an integer id must fit in 64 bits"),
        (1.5, False, "must be a string or a 64-bit integer, not number"),
        ("", False, "must be 1 to 256 characters, not 0"),
        ("x" * (MAX_ID_LENGTH + 1), False, "must be 1 to 256 characters, not 257"),
        ("a\x00b", True, "must not contain NUL characters"),
        ("\ud800", False, "must be valid Unicode (it holds a lone surrogate)"),
    ],
)
def test_identifier_refuses_naming_the_field(value: Any, forbid_nul: bool, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        identifier("request_id", value, forbid_nul=forbid_nul)
    assert (caught.value.field, caught.value.message) == ("request_id", message)


def test_identifier_keeps_strings_and_writes_integers_as_text() -> None:
    assert identifier("entity_id", "e-1") == "e-1"
    assert identifier("entity_id", -(2**63)) == str(-(2**63))
    assert identifier("entity_id", "a\x00b") == "a\x00b"  # load_json's scan refuses it earlier


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "record has no value"),
        (b"x" * 11, "is 11 bytes, over the limit of 10"),
        (b"{", "invalid JSON: "),
    ],
)
def test_decode_json_names_what_is_wrong(raw: bytes | None, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        decode_json(raw, max_bytes=10)
    assert caught.value.field == "$" and caught.value.message.startswith(message)


@given(
    st.binary(max_size=200)
    | st.builds(
        orjson.dumps,
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=5), inner, max_size=4)
            ),
            max_leaves=10,
        ),
    )
)
def test_decode_json_gives_a_value_or_a_validation_error(raw: bytes) -> None:
    try:
        decode_json(raw, max_bytes=150)
    except ValidationError as exc:
        assert exc.field and exc.message
    else:
        assert len(raw) <= 150  # nothing over the limit is taken
