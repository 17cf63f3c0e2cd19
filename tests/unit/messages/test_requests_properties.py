"""Decoding is total: any bytes give requests or named rejections, never an exception.

Property tests feed arbitrary bytes and arbitrary JSON (huge integers, NaN and
infinities, deep nesting, lone surrogates) to the decoder; the examples at the end are
the inputs that crashed the inference agent before.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.requests import (
    FLOAT32_MAX,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    SENT_AT_RANGE,
    ParsedRequest,
    RejectedRequest,
    decode_record,
    parse_request,
)
from phoenix_stream.messages.validation import load_json

MAX_BYTES = 200_000
KINDS = {"invalid_json", "invalid_request", "too_large", "batch_too_large"}

# Text around the surrogate block half the time (hypothesis leaves category Cs out of
# st.characters() by default, and mostly out of a union of character strategies).
AROUND_SURROGATES = st.characters(min_codepoint=0xD7F0, max_codepoint=0xE00F)
TEXT = st.text(max_size=12) | st.text(alphabet=AROUND_SURROGATES, min_size=1, max_size=6)
NAMES = st.sampled_from(["x", "credit_amount", "age", ""]) | TEXT
NUMBERS = (
    st.integers()
    | st.integers(min_value=-(10**450), max_value=10**450)
    | st.floats()
    | st.floats(width=32)
    | st.sampled_from([3.4028234663852886e38, 3.5e38, 1e39, -1e39, 1e308, 1_700_000_000.0])
)
IDS = st.none() | TEXT | NUMBERS | st.text(min_size=250, max_size=260) | st.booleans()
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(NAMES, children, max_size=4)


JSON_VALUES = st.recursive(SCALARS, containers, max_leaves=20)
# Mostly well-formed requests with a bad value here and there, so that validation is
# exercised past its first check.
GOOD_IDS = st.text(min_size=1, max_size=20) | TEXT.filter(bool) | st.integers(-(2**63), 2**64 - 1)
REQUESTS = st.fixed_dictionaries(
    {"request_id": GOOD_IDS | IDS, "entity_id": GOOD_IDS | IDS},
    optional={
        "model": GOOD_IDS | IDS,
        "features": st.dictionaries(NAMES, NUMBERS, max_size=6) | JSON_VALUES,
        "sent_at": st.floats(*SENT_AT_RANGE) | NUMBERS | SCALARS,
    },
)
PAYLOADS = REQUESTS | st.lists(REQUESTS, max_size=4) | JSON_VALUES

# Fragments that reach the lenient parser and the depth scan, not only orjson's first
# complaint: arbitrary bytes mostly fail at their first character.
FRAGMENTS = st.lists(
    st.sampled_from(
        [
            b"{",
            b"}",
            b"[",
            b"]",
            b'"',
            b"\\",
            b":",
            b",",
            b" ",
            b"NaN",
            b"-Infinity",
            b"1e999",
            b"1" * 401,
            b"7",
            b"null",
            b'"\\ud800"',
            b'"\\udc00\\ud800"',
            b"\xff",
            b"\xed\xa0\x80",
            b'"request_id"',
            b'"entity_id"',
            b'"features"',
            b'"sent_at"',
            b'"x"',
        ]
    ),
    max_size=80,
).map(b"".join)


def encode(value: Any, ascii_escapes: bool) -> bytes:
    """JSON text as a careless producer writes it: NaN, huge integers, lone surrogates."""
    text = json.dumps(value, ensure_ascii=ascii_escapes)  # "\ud800" escapes, or raw ones
    return text.encode("utf-8", "surrogatepass")  # raw surrogates become invalid UTF-8


def decode(raw: bytes | None) -> list[ParsedRequest | RejectedRequest]:
    return decode_record(
        raw,
        default_model="credit-risk",
        max_bytes=MAX_BYTES,
        max_batch=3,
        require_request_id=False,
        id_factory=lambda: "generated",
    )


def assert_sound(raw: bytes, items: list[ParsedRequest | RejectedRequest]) -> None:
    """What every consumer of the decoder relies on."""
    assert items
    for item in items:
        if isinstance(item, ParsedRequest):
            assert_valid(item)
            assert isinstance(item.original_bytes(raw), bytes)
        else:
            assert isinstance(item, RejectedRequest), item
            assert item.kind in KINDS
            assert isinstance(item.original, bytes)
            # Dead letters and HTTP errors encode these: short and valid Unicode.
            assert len(item.error) <= 400
            orjson.dumps({"error": item.error, "field": item.field})
            if item.kind == "invalid_request" and item.error != "empty batch":
                assert item.field


def assert_valid(item: ParsedRequest) -> None:
    for text, limit in (
        (item.request_id, MAX_ID_LENGTH),
        (item.entity_id, MAX_ID_LENGTH),
        (item.model, MAX_NAME_LENGTH),
    ):
        assert type(text) is str and 0 < len(text) <= limit
        text.encode("utf-8")
    if item.features is not None:
        for name, number in item.features.items():
            assert 0 < len(name) <= MAX_NAME_LENGTH
            name.encode("utf-8")
            assert type(number) is float and abs(number) <= FLOAT32_MAX
        as_float32 = np.array(list(item.features.values()), dtype=np.float64).astype(np.float32)
        assert np.isfinite(as_float32).all()
    if item.sent_at is not None:
        assert SENT_AT_RANGE[0] <= item.sent_at <= SENT_AT_RANGE[1]
    orjson.dumps(item.item)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | FRAGMENTS)
@example(b"[" * 50_000 + b"NaN" + b"]" * 50_000)
@example(b"[" * 65 + b'\\"' * 10_000 + b"NaN")
def test_any_bytes_decode_without_raising(raw: bytes) -> None:
    assert_sound(raw, decode(raw))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(PAYLOADS, st.booleans())
def test_any_json_decodes_without_raising(value: Any, ascii_escapes: bool) -> None:
    raw = encode(value, ascii_escapes)
    assert_sound(raw, decode(raw))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(REQUESTS | PAYLOADS)
def test_parse_request_raises_only_validation_errors(value: Any) -> None:
    # Python values straight in: integers stay integers however large, strings may hold
    # surrogates; the checks must hold without load_json's help.
    try:
        parsed = parse_request(value, default_model="credit-risk", require_request_id=False)
    except ValidationError as exc:
        assert exc.field and len(exc.message) <= 400
        orjson.dumps({"error": exc.message, "field": exc.field})
    else:
        assert_valid(parsed)


@given(PAYLOADS, st.booleans())
def test_load_json_raises_only_value_error_and_strings_encode(
    value: Any, ascii_escapes: bool
) -> None:
    try:
        decoded = load_json(encode(value, ascii_escapes))
    except ValueError:
        return
    json.dumps(decoded, ensure_ascii=False).encode("utf-8")


# The inputs found crashing the inference agent or the HTTP view, and their neighbours.


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


@pytest.mark.parametrize("with_nan", [False, True])
def test_50000_deep_nesting_is_invalid_json(with_nan: bool) -> None:
    inner = b'{"x": NaN}' if with_nan else b"1"
    raw = (
        b'{"request_id": "r", "entity_id": "e", "features": '
        + (b"[" * 50_000 + inner + b"]" * 50_000)
        + b"}"
    )
    limit = sys.getrecursionlimit()
    [item] = decode(raw)
    assert isinstance(item, RejectedRequest) and item.kind == "invalid_json"
    assert "depth" in item.error and len(item.error) < 200
    assert sys.getrecursionlimit() == limit


def test_nan_beyond_the_lenient_depth_is_invalid_json_not_recursion() -> None:
    raw = b'{"request_id": "r", "entity_id": "e", "features": {"x": NaN}, "pad": ' + (
        nested(500) + b"}"
    )
    [item] = decode(raw)
    assert isinstance(item, RejectedRequest) and item.kind == "invalid_json"


@pytest.mark.parametrize(
    ("number", "message"),
    [
        (b"1" + b"0" * 399, "finite"),  # 400 digits: beyond float range
        (b"1" + b"0" * 5000, "finite"),  # beyond int()'s 4300-digit limit too
        (b"1" + b"0" * 39, "float32"),  # 40 digits: a float, not a float32
        (b"-1" + b"0" * 39, "float32"),
        (b"1e39", "float32"),
        (b"NaN", "finite"),
        (b"Infinity", "finite"),
    ],
)
def test_out_of_range_feature_names_the_feature(number: bytes, message: str) -> None:
    raw = b'{"request_id": "r", "entity_id": "e", "features": {"credit_amount": ' + number + b"}}"
    [item] = decode(raw)
    assert isinstance(item, RejectedRequest), item
    assert (item.kind, item.field) == ("invalid_request", "features.credit_amount")
    assert message in item.error and len(item.error) < 200
    assert item.original == raw


def test_huge_integer_in_a_batch_item_is_rejected_alone() -> None:
    big = b"1" + b"0" * 399
    raw = (
        b'[{"request_id": "a", "entity_id": "e", "features": {"credit_amount": ' + big + b"}},"
        b' {"request_id": "b", "entity_id": "e", "features": {"credit_amount": 2.5}}]'
    )
    bad, good = decode(raw)
    assert isinstance(bad, RejectedRequest) and bad.field == "features.credit_amount"
    assert bad.batch_index == 0 and orjson.loads(bad.original)["request_id"] == "a"
    assert isinstance(good, ParsedRequest) and good.features == {"credit_amount": 2.5}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"request_id": "r", "entity_id": "\\ud800"}',
        b'{"request_id": "r", "entity_id": "\\udc00\\ud800"}',
        b'{"request_id": "r", "entity_id": "\\ud800", "features": {"x": NaN}}',
        b'{"request_id": "r", "entity_id": "e", "features": {"\\ud800": NaN}}',
        b'{"request_id": "r", "entity_id": "e", "model": "\\udfff", "sent_at": Infinity}',
    ],
)
def test_lone_surrogate_escapes_are_invalid_json(raw: bytes) -> None:
    [item] = decode(raw)
    assert isinstance(item, RejectedRequest) and item.kind == "invalid_json", item
    assert "surrogate" in item.error or "unexpected character" in item.error


def test_surrogate_pair_escapes_are_one_character() -> None:
    [item] = decode(b'{"request_id": "r", "entity_id": "\\ud83d\\ude00", "sent_at": NaN}')
    assert isinstance(item, RejectedRequest) and item.field == "sent_at"
    [item] = decode(b'{"request_id": "r", "entity_id": "\\ud83d\\ude00"}')
    assert isinstance(item, ParsedRequest) and item.entity_id == "\U0001f600"


def test_lone_surrogate_in_a_python_value_never_passes_validation() -> None:
    for field in ("request_id", "entity_id", "model"):
        value = {"request_id": "r", "entity_id": "e", field: "a\ud800"}
        with pytest.raises(ValidationError) as info:
            parse_request(value, default_model="m")
        assert info.value.field == field
    with pytest.raises(ValidationError) as info:
        parse_request(
            {"request_id": "r", "entity_id": "e", "features": {"\udc00": 1.0}}, default_model="m"
        )
    assert info.value.field == "features.\\udc00"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"request_id": "r", "entity_id": "\xff"}',
        b'{"request_id": "r", "entity_id": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8
        b'{"request_id": "r", "entity_id": "\xc3"}',
        b'{"request_id": "r", "entity_id": "e", "sent_at": NaN, "x": "\xff"}',
        b"\xef\xbb\xbf{}",
        '{"request_id": "r", "entity_id": "e", "sent_at": NaN}'.encode("utf-16"),
    ],
)
def test_invalid_utf8_is_invalid_json(raw: bytes) -> None:
    [item] = decode(raw)
    assert isinstance(item, RejectedRequest) and item.kind == "invalid_json", item
    assert item.original == raw


def test_nan_still_names_its_field_through_the_lenient_parser() -> None:
    [item] = decode(b'[{"request_id": "a", "entity_id": "e", "features": {"age": NaN}}]')
    assert isinstance(item, RejectedRequest) and item.field == "features.age"
    assert item.batch_index == 0
    # The item is re-encoded for its dead letter: orjson writes NaN as null.
    assert orjson.loads(item.original)["features"] == {"age": None}
