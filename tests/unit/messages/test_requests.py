"""Request decoding: every bad input is rejected with a reason, the field and its bytes."""

from __future__ import annotations

import math

import orjson
import pytest

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.requests import (
    MAX_FEATURES,
    ParsedRequest,
    RejectedRequest,
    decode_record,
    parse_request,
)


def decode(raw: bytes, **kwargs: object) -> list[ParsedRequest | RejectedRequest]:
    options: dict[str, object] = {"default_model": "m", "max_bytes": 10_000, "max_batch": 3}
    options.update(kwargs)
    return decode_record(raw, **options)  # type: ignore[arg-type]


def test_single_request_gets_default_model() -> None:
    [item] = decode(b'{"request_id": "r1", "entity_id": "e1", "features": {"x": 2}}')
    assert isinstance(item, ParsedRequest)
    assert (item.request_id, item.entity_id, item.model) == ("r1", "e1", "m")
    assert item.features == {"x": 2.0}
    assert item.batch_index is None


def test_batch_rejects_only_the_bad_item() -> None:
    raw = orjson.dumps(
        [
            {"request_id": "a", "entity_id": "e"},
            {"request_id": "b"},
            {"request_id": "c", "entity_id": "e", "model": "other"},
        ]
    )
    items = decode(raw)
    assert [type(i).__name__ for i in items] == [
        "ParsedRequest",
        "RejectedRequest",
        "ParsedRequest",
    ]
    bad = items[1]
    assert isinstance(bad, RejectedRequest)
    assert bad.field == "entity_id" and bad.batch_index == 1
    assert orjson.loads(bad.original) == {"request_id": "b"}
    assert isinstance(items[2], ParsedRequest) and items[2].model == "other"


@pytest.mark.parametrize(
    ("raw", "kind", "field"),
    [
        (b'{"request_id": "r", ', "invalid_json", None),
        (b"\xff\xfe", "invalid_json", None),
        (b"[]", "invalid_request", None),
        (b'"just a string"', "invalid_request", "$"),
        (b'{"entity_id": "e"}', "invalid_request", "request_id"),
        (b'{"request_id": "r", "entity_id": true}', "invalid_request", "entity_id"),
        (b'{"request_id": "r", "entity_id": "e", "features": [1]}', "invalid_request", "features"),
        (
            b'{"request_id": "r", "entity_id": "e", "features": {"x": "1"}}',
            "invalid_request",
            "features.x",
        ),
        (
            b'{"request_id": "r", "entity_id": "e", "features": {"x": NaN}}',
            "invalid_request",
            "features.x",
        ),
        (
            b'{"request_id": "r", "entity_id": "e", "features": {"x": Infinity}}',
            "invalid_request",
            "features.x",
        ),
        (b'{"request_id": "r", "entity_id": "e", "colour": "red"}', "invalid_request", "colour"),
        (b'{"request_id": "r", "entity_id": "e", "model": 3}', "invalid_request", "model"),
    ],
)
def test_bad_records_name_kind_and_field(raw: bytes, kind: str, field: str | None) -> None:
    [item] = decode(raw)
    assert isinstance(item, RejectedRequest), item
    assert (item.kind, item.field) == (kind, field)
    assert item.original == raw
    if field:
        assert field in item.error or field == "$"


def test_size_and_batch_limits() -> None:
    [big] = decode(b'{"request_id": "r", "entity_id": "' + b"e" * 200 + b'"}', max_bytes=100)
    assert isinstance(big, RejectedRequest) and big.kind == "too_large"
    raw = orjson.dumps([{"request_id": str(i), "entity_id": "e"} for i in range(4)])
    [many] = decode(raw)
    assert isinstance(many, RejectedRequest) and many.kind == "batch_too_large"
    [none] = decode_record(None, default_model="m", max_bytes=10, max_batch=1)
    assert isinstance(none, RejectedRequest)


def test_http_requests_get_generated_ids() -> None:
    parsed = parse_request(
        {"entity_id": 42},
        default_model="m",
        require_request_id=False,
        id_factory=lambda: "generated",
    )
    assert parsed.request_id == "generated" and parsed.entity_id == "42"
    with pytest.raises(ValidationError) as info:
        parse_request({"entity_id": "e"}, default_model="m")
    assert info.value.field == "request_id"


def test_original_bytes_of_batch_item_is_the_item() -> None:
    items = decode(
        orjson.dumps([{"request_id": "a", "entity_id": "e", "sent_at": 1_700_000_000.5}])
    )
    item = items[0]
    assert isinstance(item, ParsedRequest)
    assert orjson.loads(item.original_bytes(b"ignored")) == {
        "request_id": "a",
        "entity_id": "e",
        "sent_at": 1_700_000_000.5,
    }
    [single] = decode(b'{"request_id": "a", "entity_id": "e"}')
    assert isinstance(single, ParsedRequest)
    assert single.original_bytes(b"whole record") == b"whole record"
    assert not math.isnan(item.sent_at or 0.0)


ENTITY = b'"request_id": "r", "entity_id": "e"'


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (b'{"request_id": "r", "entity_id": 18446744073709551616}', "entity_id", "string"),
        (b'{"request_id": "r", "entity_id": -9223372036854775809}', "entity_id", "string"),
        (b'{"request_id": "r", "entity_id": 1.5}', "entity_id", "not number"),
        (b'{"request_id": [1], "entity_id": "e"}', "request_id", "not array"),
        (b'{"request_id": "", "entity_id": "e"}', "request_id", "1 to 256"),
        (b'{"request_id": "r", "entity_id": "' + b"e" * 257 + b'"}', "entity_id", "1 to 256"),
        (b"{" + ENTITY + b', "model": "' + b"m" * 129 + b'"}', "model", "1 to 128"),
        (b"{" + ENTITY + b', "model": ""}', "model", "1 to 128"),
        (b"{" + ENTITY + b', "features": {"' + b"f" * 129 + b'": 1}}', "features.", "1 to 128"),
        (b"{" + ENTITY + b', "features": {"": 1}}', "features.", "1 to 128"),
        (b"{" + ENTITY + b', "features": {"x": 1e39}}', "features.x", "float32"),
        (b"{" + ENTITY + b', "features": {"x": -3.5e38}}', "features.x", "float32"),
        (b"{" + ENTITY + b', "features": {"x": 1e300}}', "features.x", "float32"),
        (b"{" + ENTITY + b', "features": {"x": 1e400}}', "features.x", "finite"),
        (b"{" + ENTITY + b', "features": {"x": -Infinity}}', "features.x", "finite"),
        (b"{" + ENTITY + b', "features": {"x": true}}', "features.x", "boolean"),
        (b"{" + ENTITY + b', "features": {"x": null}}', "features.x", "null"),
        (b"{" + ENTITY + b', "sent_at": 1.5}', "sent_at", "epoch seconds"),
        (b"{" + ENTITY + b', "sent_at": 1700000000000}', "sent_at", "epoch seconds"),
        (b"{" + ENTITY + b', "sent_at": NaN}', "sent_at", "finite"),
        (b"{" + ENTITY + b', "sent_at": "now"}', "sent_at", "string"),
        (b"{" + ENTITY + b', "sent_at": 1' + b"0" * 400 + b"}", "sent_at", "finite"),
    ],
)
def test_out_of_range_values_name_the_field(raw: bytes, field: str, message: str) -> None:
    [item] = decode(raw)
    assert isinstance(item, RejectedRequest), item
    assert item.kind == "invalid_request"
    assert item.field is not None and item.field.startswith(field), item
    assert message in item.error and len(item.error) < 300


def test_integer_ids_within_64_bits_become_decimal_strings() -> None:
    raw = b'{"request_id": -9223372036854775808, "entity_id": 18446744073709551615}'
    [item] = decode(raw)
    assert isinstance(item, ParsedRequest)
    assert (item.request_id, item.entity_id) == ("-9223372036854775808", "18446744073709551615")


def test_float32_bounds_and_integer_features_are_accepted() -> None:
    raw = (
        b"{" + ENTITY + b', "features": {"big": 3.4028234663852886e38, "small": -3.4e38, "n": 7}, '
        b'"sent_at": 1700000000}'
    )
    [item] = decode(raw)
    assert isinstance(item, ParsedRequest), item
    assert item.features == {"big": 3.4028234663852886e38, "small": -3.4e38, "n": 7.0}
    assert item.sent_at == 1_700_000_000.0 and type(item.sent_at) is float


def test_feature_count_is_bounded() -> None:
    features = {f"f{i}": 1.0 for i in range(MAX_FEATURES + 1)}
    [item] = decode(
        orjson.dumps({"request_id": "r", "entity_id": "e", "features": features}), max_bytes=100_000
    )
    assert isinstance(item, RejectedRequest) and item.field == "features"
    assert str(MAX_FEATURES) in item.error


def test_unknown_field_with_a_huge_name_is_cut_in_the_error() -> None:
    raw = b"{" + ENTITY + b', "' + b"z" * 5000 + b'": 1}'
    [item] = decode(raw)
    assert isinstance(item, RejectedRequest) and item.field is not None
    assert item.field.startswith("zzz") and len(item.field) < 100 and len(item.error) < 200


def test_batch_item_that_orjson_cannot_encode_keeps_the_whole_record() -> None:
    # 300 levels decode (orjson's limit is 1024) but do not encode (orjson's is 255).
    deep = b"[" * 300 + b"]" * 300
    raw = b'[{"request_id": "a", "entity_id": "e", "pad": ' + deep + b"}]"
    [item] = decode(raw)
    assert isinstance(item, RejectedRequest) and item.field == "pad"
    assert item.original == raw and item.batch_index == 0
