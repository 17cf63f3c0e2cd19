"""Request decoding: every bad input is rejected with a reason, the field and its bytes."""

from __future__ import annotations

import math

import orjson
import pytest

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.requests import (
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
    items = decode(orjson.dumps([{"request_id": "a", "entity_id": "e", "sent_at": 1.5}]))
    item = items[0]
    assert isinstance(item, ParsedRequest)
    assert orjson.loads(item.original_bytes(b"ignored")) == {
        "request_id": "a",
        "entity_id": "e",
        "sent_at": 1.5,
    }
    [single] = decode(b'{"request_id": "a", "entity_id": "e"}')
    assert isinstance(single, ParsedRequest)
    assert single.original_bytes(b"whole record") == b"whole record"
    assert not math.isnan(item.sent_at or 0.0)
