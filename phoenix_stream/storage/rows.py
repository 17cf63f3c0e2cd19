"""Prediction rows as the sink receives them, checked and converted into COPY records.

A row is a mapping with the keys in ``COLUMNS`` (a ``Prediction`` record's ``asdict()``);
times are epoch seconds. Conversion is strict where PostgreSQL would fail the whole batch
later (a NUL in text, a string score), and names the offending row and field.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from phoenix_stream.exceptions import ValidationError

__all__ = ["COLUMNS", "prediction_records"]

COLUMNS: tuple[str, ...] = (
    "request_id",
    "entity_id",
    "model",
    "version",
    "variant",
    "score",
    "label",
    "features",
    "defaults_used",
    "degraded",
    "source",
    "received_at",
    "predicted_at",
    "latency_ms",
)
"""Row keys, in the order of the records given to COPY (all required; values may be None,
except request_id)."""


def _bad(index: int, key: str, message: str) -> ValidationError:
    return ValidationError(f"rows[{index}].{key}", message)


def _text(value: Any, index: int, key: str) -> str | None:
    if type(value) is str and "\x00" not in value:  # PostgreSQL text cannot hold NUL
        return value
    if value is None:
        return None
    raise _bad(index, key, f"must be a string without NUL, got {value!r}")


def _real(value: Any, index: int, key: str) -> float | None:
    if type(value) is float or value is None:
        return value
    # numbers.Real also admits ints and numpy scalars, which the model path produces.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _bad(index, key, f"must be a number, got {value!r}")
    return float(value)


def _label(value: Any, index: int) -> int | None:
    if type(value) is int or value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _bad(index, "label", f"must be an integer, got {value!r}")
    return int(value)


def _features(value: Any, index: int) -> str | None:
    if value is None:
        return None
    try:
        # jsonb text; orjson writes NaN/inf as null and numpy scalars as numbers.
        encoded = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError as exc:
        raise _bad(index, "features", f"must map names to numbers: {exc}") from exc
    if not encoded.startswith("{"):
        raise _bad(index, "features", "must be a mapping of name to number")
    return encoded


def _names(value: Any, index: int) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(type(name) is str for name in value):
        raise _bad(index, "defaults_used", "must be a list of feature names")
    return list(value)


def _flag(value: Any, index: int) -> bool | None:
    if value is None or value is True or value is False:
        return value
    if value not in (True, False):  # admits numpy.bool_ and 0/1
        raise _bad(index, "degraded", f"must be a boolean, got {value!r}")
    return bool(value)


def _record(row: Mapping[str, Any], index: int) -> tuple[Any, ...]:
    request_id = row["request_id"]
    if type(request_id) is not str or not request_id or "\x00" in request_id:
        raise _bad(index, "request_id", f"must be a non-empty string, got {request_id!r}")
    return (
        request_id,
        _text(row["entity_id"], index, "entity_id"),
        _text(row["model"], index, "model"),
        _text(row["version"], index, "version"),
        _text(row["variant"], index, "variant"),
        _real(row["score"], index, "score"),
        _label(row["label"], index),
        _features(row["features"], index),
        _names(row["defaults_used"], index),
        _flag(row["degraded"], index),
        _text(row["source"], index, "source"),
        _real(row["received_at"], index, "received_at"),
        _real(row["predicted_at"], index, "predicted_at"),
        _real(row["latency_ms"], index, "latency_ms"),
    )


def prediction_records(
    rows: Sequence[Mapping[str, Any]],
    rejects: list[tuple[int, ValidationError]] | None = None,
) -> list[tuple[Any, ...]]:
    """Check and convert rows (keys: COLUMNS; times in epoch seconds) into COPY records.

    A missing key or a wrong value raises ValidationError naming ``rows[i].<key>``; or,
    when ``rejects`` is given, that row is left out and ``(i, error)`` appended there.
    """
    records: list[tuple[Any, ...]] = []
    for index, row in enumerate(rows):
        try:
            try:
                records.append(_record(row, index))
            except KeyError as exc:
                raise _bad(index, str(exc.args[0]), "is missing") from exc
        except ValidationError as exc:
            if rejects is None:
                raise
            rejects.append((index, exc))
    return records
