"""The feature value codec: named features survive, anything else is refused with a reason."""

from __future__ import annotations

import math
import random

import orjson
import pytest

from phoenix_stream.features.codec import (
    FORMAT_VERSION,
    StoredFeatures,
    check_values,
    decode_features,
    encode_features,
)


def test_round_trip_keeps_names_values_and_time() -> None:
    values = {"age": 31.0, "income": 52_000.25, "late_payments": 2, "ratio": -0.125}
    decoded = decode_features(encode_features(values, 1_732_650_000.5))
    assert decoded == StoredFeatures(
        values={"age": 31.0, "income": 52_000.25, "late_payments": 2.0, "ratio": -0.125},
        updated_at=1_732_650_000.5,
    )
    assert all(type(v) is float for v in decoded.values.values())


def test_empty_feature_map_round_trips() -> None:
    assert decode_features(encode_features({}, 5.0)) == StoredFeatures({}, 5.0)


def test_value_is_readable_json_with_version() -> None:
    obj = orjson.loads(encode_features({"a": 1.5}, 2.0))
    assert obj == {"v": FORMAT_VERSION, "t": 2.0, "f": {"a": 1.5}}


@pytest.mark.parametrize(
    ("values", "updated_at", "reason"),
    [
        ({"a": math.nan}, 1.0, "finite"),
        ({"a": math.inf}, 1.0, "finite"),
        ({"a": "1.0"}, 1.0, "number"),
        ({"a": True}, 1.0, "number"),
        ({"a": None}, 1.0, "number"),
        ({"": 1.0}, 1.0, "name"),
        ({1: 1.0}, 1.0, "name"),
        ({"a": 1.0}, math.nan, "updated_at"),
    ],
)
def test_encode_refuses_what_could_not_be_read_back(
    values: dict[object, object], updated_at: float, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        encode_features(values, updated_at)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"\x92\x01\x02", "not JSON"),  # msgpack from another writer
        (b'{"v":1,"t":1.0,"f":{"a":1.0}', "not JSON"),  # truncated
        (b"[1, 2.0, {}]", "not a JSON object"),
        (b'{"v":2,"t":1.0,"f":{}}', "version"),
        (b'{"v":true,"t":1.0,"f":{}}', "version"),
        (b'{"t":1.0,"f":{}}', "version"),
        (b'{"v":1,"t":"yesterday","f":{}}', "updated_at"),
        (b'{"v":1,"t":1.0,"f":[1.0]}', "'f'"),
        (b'{"v":1,"t":1.0,"f":{"a":"x"}}', "not a number"),
        (b'{"v":1,"t":1.0,"f":{"a":false}}', "not a number"),
        (b'{"v":1,"t":1.0,"f":{"a":null}}', "not a number"),
        (b'{"v":1,"t":1.0,"f":{"a":1e400}}', "not JSON"),  # orjson refuses infinity
    ],
)
def test_decode_refuses_foreign_or_broken_values(raw: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_features(raw)


def test_decode_accepts_ints_from_another_writer() -> None:
    decoded = decode_features(b'{"v":1,"t":7,"f":{"a":3,"b":0.5}}')
    assert decoded.values == {"a": 3, "b": 0.5}
    assert decoded.updated_at == 7.0


def test_check_values_sum_overflow_is_not_mistaken_for_corruption() -> None:
    check_values({"a": 1e308, "b": 1e308})  # the sum overflows; every value is finite
    with pytest.raises(ValueError, match="finite"):
        check_values({"a": 1e308, "b": math.inf})


def test_random_bytes_never_escape_as_other_errors() -> None:
    rng = random.Random(3)
    good = encode_features({"age": 1.0, "income": 2.0}, 3.0)
    for _ in range(2000):
        raw = bytearray(good)
        for _ in range(rng.randrange(1, 4)):  # flip a few bytes of a valid value
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        try:
            decoded = decode_features(bytes(raw))
        except ValueError:
            continue
        assert all(math.isfinite(v) for v in decoded.values.values())
        assert math.isfinite(decoded.updated_at)


def test_stored_features_is_frozen() -> None:
    stored = StoredFeatures({"a": 1.0}, 1.0)
    with pytest.raises(AttributeError):
        stored.updated_at = 2.0  # type: ignore[misc]
