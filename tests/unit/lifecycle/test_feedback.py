"""Feedback decoding is total: any bytes or JSON give items or rejections naming the field."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.lifecycle.feedback import (
    FIELDS,
    OBSERVED_AT_RANGE,
    ParsedFeedback,
    RejectedFeedback,
    decode_feedback,
    parse_feedback,
)
from phoenix_stream.messages.requests import MAX_ID_LENGTH
from phoenix_stream.messages.text import UnstorableText, unstorable_field
from phoenix_stream.messages.validation import load_json, shorten

NOW = 1_750_000_000.0
MAX_BYTES = 100_000
MAX_BATCH = 50
KINDS = {"invalid_json", "too_large", "batch_too_large", "invalid_feedback"}

AROUND_SURROGATES = st.characters(min_codepoint=0xD7F0, max_codepoint=0xE00F)
TEXT = st.text(max_size=12) | st.text(alphabet=AROUND_SURROGATES, min_size=1, max_size=6)
NUMBERS = (
    st.integers()
    | st.integers(min_value=-(10**450), max_value=10**450)
    | st.floats()
    | st.sampled_from([0, 1, 0.0, 1.0, 2, -1, 1e308, 1_700_000_000.0, 1_700_000_000_000.0])
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4)


JSON_VALUES = st.recursive(SCALARS, containers, max_leaves=12)
# Mostly well-formed items with a bad value here and there.
ITEMS = st.fixed_dictionaries(
    {"request_id": st.text(min_size=1, max_size=20) | st.integers(0, 2**64 - 1) | SCALARS},
    optional={
        "label": st.sampled_from([0, 1]) | SCALARS,
        "observed_at": st.floats(*OBSERVED_AT_RANGE) | SCALARS,
        "extra": SCALARS,
    },
)


def _encode(value: Any) -> bytes:
    """JSON as any client may send it: huge integers, NaN, escaped lone surrogates."""
    return json.dumps(value).encode()


def _check_one(item: Any) -> None:
    """parse_feedback returns a valid item or raises ValidationError naming a field."""
    try:
        parsed = parse_feedback(item, now=NOW)
    except ValidationError as exc:
        assert exc.field
        if isinstance(item, dict):
            assert exc.field == "$" or exc.field in FIELDS or exc.field in map(str, item)
        else:
            assert exc.field == "$"
        return
    assert isinstance(item, dict)
    assert 0 < len(parsed.request_id) <= MAX_ID_LENGTH and "\x00" not in parsed.request_id
    parsed.request_id.encode("utf-8")  # storable in PostgreSQL text
    assert parsed.label in (0, 1) and type(parsed.label) is int
    low, high = OBSERVED_AT_RANGE
    assert parsed.observed_at == NOW or low <= parsed.observed_at <= high
    assert orjson.loads(parsed.to_json())["request_id"] == parsed.request_id


@given(JSON_VALUES | ITEMS)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_any_json_value_is_an_item_or_a_named_rejection(item: Any) -> None:
    _check_one(item)


@given(st.binary(max_size=300) | JSON_VALUES.map(_encode))
@example(b'{"request_id": "r", "label": NaN}')
@example(b'{"request_id": "r", "label": 1, "observed_at": Infinity}')
@example(b'{"request_id": "\\ud800", "label": 1}')
@example(b'{"request_id": 123456789012345678901234567890, "label": 1}')
@example(b"[" * 5000)
@example(b"[]")
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_any_bytes_decode_without_raising(raw: bytes) -> None:
    decoded = decode_feedback(raw, now=NOW, max_bytes=MAX_BYTES, max_batch=MAX_BATCH)
    assert decoded
    for entry in decoded:
        if isinstance(entry, RejectedFeedback):
            assert entry.kind in KINDS and entry.error
            if entry.kind == "invalid_feedback" and entry.batch_index is None and entry.field:
                assert entry.original == raw
        else:
            assert isinstance(entry, ParsedFeedback)
            assert entry.label in (0, 1)


@given(st.lists(ITEMS, min_size=1, max_size=8))
@example([{"request_id": "a\x00", "label": 1}, {"request_id": "b", "label": 0}])
def test_list_items_are_judged_one_by_one(items: list[dict[str, Any]]) -> None:
    raw = _encode(items)
    decoded = decode_feedback(raw, now=NOW, max_bytes=MAX_BYTES, max_batch=MAX_BATCH)
    try:
        payload = load_json(raw)  # as the decoder sees it (integers beyond 64 bits as floats)
    except UnstorableText as exc:  # NUL somewhere: the list's items are still judged alone
        payload = exc.payload
    except ValueError:  # a lone surrogate: the whole record is not JSON
        assert [(d.kind, d.batch_index) for d in decoded] == [("invalid_json", None)]
        return
    assert [d.batch_index for d in decoded] == list(range(len(items)))
    for entry, item in zip(decoded, payload, strict=True):
        unstorable = unstorable_field(item)
        if unstorable is not None:  # refused where it enters, before its fields are read
            assert isinstance(entry, RejectedFeedback) and entry.kind == "invalid_feedback"
            assert entry.field == shorten(unstorable[0], 200)
            assert entry.original == orjson.dumps(item)
        elif isinstance(entry, RejectedFeedback):
            assert entry.field is not None
            with pytest.raises(ValidationError) as caught:
                parse_feedback(item, now=NOW)
            assert caught.value.field == entry.field
            try:  # the item alone, re-encoded; the record when orjson cannot encode it
                alone = orjson.dumps(item)
            except orjson.JSONEncodeError:
                alone = raw
            assert entry.original == alone
        else:
            assert entry == parse_feedback(item, now=NOW, batch_index=entry.batch_index)


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"label": 1}, "request_id"),
        ({"request_id": "", "label": 1}, "request_id"),
        ({"request_id": "a\x00b", "label": 1}, "request_id"),
        ({"request_id": "x" * (MAX_ID_LENGTH + 1), "label": 1}, "request_id"),
        ({"request_id": 2**64, "label": 1}, "request_id"),
        ({"request_id": ["r"], "label": 1}, "request_id"),
        ({"request_id": "r"}, "label"),
        ({"request_id": "r", "label": 2}, "label"),
        ({"request_id": "r", "label": True}, "label"),
        ({"request_id": "r", "label": 1.0}, "label"),
        ({"request_id": "r", "label": "1"}, "label"),
        ({"request_id": "r", "label": 1, "observed_at": "now"}, "observed_at"),
        ({"request_id": "r", "label": 1, "observed_at": 1_700_000_000_000}, "observed_at"),
        ({"request_id": "r", "label": 1, "observed_at": float("nan")}, "observed_at"),
        ({"request_id": "r", "label": 1, "score": 0.3}, "score"),
        ([{"request_id": "r", "label": 1}], "$"),
    ],
)
def test_rejections_name_the_field(item: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_feedback(item, now=NOW)
    assert caught.value.field == field


def test_valid_items_and_defaults() -> None:
    assert parse_feedback({"request_id": "r1", "label": 0}, now=NOW) == ParsedFeedback("r1", 0, NOW)
    given_time = parse_feedback(
        {"request_id": 42, "label": 1, "observed_at": 1_700_000_000}, now=NOW
    )
    assert given_time == ParsedFeedback("42", 1, 1_700_000_000.0)


def test_record_level_rejections() -> None:
    def kinds(raw: bytes | None, max_bytes: int = MAX_BYTES) -> list[str]:
        out = decode_feedback(raw, now=NOW, max_bytes=max_bytes, max_batch=2)
        return [d.kind for d in out if isinstance(d, RejectedFeedback)]

    assert kinds(None) == ["invalid_json"]
    assert kinds(b"{nope") == ["invalid_json"]
    assert kinds(b"[]") == ["invalid_feedback"]
    assert kinds(orjson.dumps([{"request_id": "r", "label": 1}] * 3)) == ["batch_too_large"]
    assert kinds(b'{"request_id": "r", "label": 1}', max_bytes=10) == ["too_large"]
    assert kinds(b'{"request_id": "r", "label": 1}') == []
