"""Encoding of one entity's features as a Redis value.

A value is compact JSON, ``{"v": 1, "t": <updated_at>, "f": {<name>: <value>, ...}}``, written
and read with orjson. Chosen by ``scripts/bench_feature_encoding.py`` (MGET of 512 keys, 12
features, each value decoded and checked into named features): orjson JSON read 1.1x to
1.6x the keys/s of a msgpack map over three runs (msgpack allocates every key string anew,
orjson caches them), and 2x or more the standard library's json. Packed float32 with a schema id
read 1.2x to 1.7x JSON with names restored (2x as a bare vector), but needs a schema
registry beside Redis and rounds to float32; the feature read is not the bottleneck
(docs/architecture.md section 8), so the self-describing format won. JSON is also readable with
``redis-cli GET``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeGuard, cast

import orjson

__all__ = [
    "FORMAT_VERSION",
    "StoredFeatures",
    "check_values",
    "decode_features",
    "encode_features",
]

FORMAT_VERSION = 1
"""The ``"v"`` field of every encoded value; bump it when the layout changes."""

_ONLY_FLOAT = frozenset((float,))


@dataclass(frozen=True, slots=True)
class StoredFeatures:
    """One entity's features as read from the store; ``updated_at`` in seconds since epoch."""

    values: Mapping[str, float]
    updated_at: float


def _is_number(value: object) -> TypeGuard[int | float]:
    return not isinstance(value, bool) and isinstance(value, int | float)


def encode_features(values: Mapping[str, float], updated_at: float) -> bytes:
    """Encode named feature values (finite numbers) and their update time (epoch seconds).

    Raises ValueError on a non-string name or a non-finite or non-numeric value, so nothing
    unreadable is ever written.
    """
    clean: dict[str, float] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"feature name must be a non-empty string, got {name!r}")
        if not _is_number(value):
            raise ValueError(f"feature {name!r}: value must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"feature {name!r}: value must be finite, got {value!r}")
        clean[name] = number
    if not _is_number(updated_at) or not math.isfinite(updated_at):
        raise ValueError(f"updated_at must be a finite number, got {updated_at!r}")
    return orjson.dumps({"v": FORMAT_VERSION, "t": float(updated_at), "f": clean})


def decode_features(raw: bytes) -> StoredFeatures:
    """Decode a value written by :func:`encode_features`.

    Raises ValueError (with the reason) for anything else: bytes from another writer, a
    truncated value, another format version, wrong types, non-finite numbers.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if type(obj) is not dict:
        raise ValueError("not a JSON object")
    version, stamp, values = obj.get("v"), obj.get("t"), obj.get("f")
    if version != FORMAT_VERSION or type(version) is not int:
        raise ValueError(f"unknown format version {version!r}")
    if type(stamp) is not float and not _is_number(stamp):
        raise ValueError(f"bad updated_at {stamp!r}")
    if not math.isfinite(stamp):
        raise ValueError(f"updated_at is not finite: {stamp!r}")
    if type(values) is not dict:
        raise ValueError("'f' is not an object")
    check_values(values)
    return StoredFeatures(values=values, updated_at=float(stamp))


def check_values(values: dict[str, object]) -> None:
    """Raise ValueError unless every value is a finite int or float (not bool)."""
    # Fast path in C-level loops: every value a float and their sum finite proves every
    # value finite (a NaN or inf anywhere makes the sum non-finite). Anything else, such as
    # ints from another writer or a sum that merely overflowed, takes the exact slow path.
    # Names need no check: JSON object keys are always strings.
    floats = cast("dict[str, float]", values)
    if _ONLY_FLOAT.issuperset(map(type, values.values())) and math.isfinite(sum(floats.values())):
        return
    for name, value in values.items():
        if not _is_number(value):
            raise ValueError(f"feature {name!r} is not a number: {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"feature {name!r} is not finite")
