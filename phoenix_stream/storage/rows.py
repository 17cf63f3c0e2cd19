"""Prediction rows as the sink receives them, checked and converted into COPY records.

A row is a mapping with the keys in ``COLUMNS`` (a ``Prediction`` record's ``asdict()``);
times are epoch seconds. The checks refuse, cheaply and before any I/O, what PostgreSQL or
the driver would refuse later (failing the whole batch) and what would poison readers: a
NUL or an unencodable character in text, a label beyond int4, a time beyond timestamptz or
Python's datetime, a non-finite number, an oversize value. Errors name the row and field.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from phoenix_stream.exceptions import ValidationError

__all__ = [
    "COLUMNS",
    "INT4_MAX",
    "INT4_MIN",
    "MAX_FEATURES",
    "MAX_TEXT_CHARS",
    "TIME_MAX_S",
    "TIME_MIN_S",
    "prediction_records",
]

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

TIME_MIN_S = 0.0
"""Earliest accepted time, epoch seconds: a prediction before 1970 is a broken clock."""
TIME_MAX_S = 253_402_300_800.0
"""First refused time, epoch seconds (10000-01-01 UTC). PostgreSQL's to_timestamp() fails
far beyond (1e300) but stores up to year 294276 and turns inf into 'infinity', which
asyncpg cannot read back into a datetime (year 9999 at most): one such row would break
every query that selects it. Times in milliseconds by mistake (1.7e12) land beyond too."""

INT4_MIN = -(2**31)
"""Smallest ``label`` the integer column holds."""
INT4_MAX = 2**31 - 1
"""Largest ``label`` the integer column holds."""

MAX_TEXT_CHARS = 256
"""Longest text value or feature name, characters. At 4 UTF-8 bytes each, request_id
(primary key) and model + version + predicted_at (an index) stay under btree's 2704-byte
entry limit, which PostgreSQL enforces with an error, not a truncation."""
MAX_FEATURES = 1024
"""Most entries in ``features`` and in ``defaults_used``, which bounds a row's size."""


def _bad(index: int, key: str, message: str) -> ValidationError:
    return ValidationError(f"rows[{index}].{key}", message)


def _show(value: Any) -> str:
    """repr() cut to 80 characters: a reason must stay small whatever the value."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _clean_text(value: str) -> bool:
    """True if PostgreSQL text can hold ``value``: bounded, no NUL, encodable as UTF-8."""
    if len(value) > MAX_TEXT_CHARS or "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")  # a lone surrogate (from a lenient JSON decoder) cannot be
    except UnicodeEncodeError:
        return False
    return True


def _text(value: Any, index: int, key: str) -> str | None:
    if type(value) is str and _clean_text(value):
        return value
    if value is None:
        return None
    raise _bad(
        index,
        key,
        f"must be a string of at most {MAX_TEXT_CHARS} characters without NUL, got " + _show(value),
    )


def _real(value: Any, index: int, key: str) -> float | None:
    if value is None:
        return None
    # numbers.Real also admits ints and numpy scalars, which the model path produces.
    if type(value) is not float and (
        isinstance(value, bool) or not isinstance(value, numbers.Real)
    ):
        raise _bad(index, key, f"must be a number, got {_show(value)}")
    number = float(value)
    # float8 would store inf and NaN, but they are no score or latency and turn every
    # aggregate over them (avg, sum) into NaN or inf.
    if not math.isfinite(number):
        raise _bad(index, key, f"must be a finite number, got {number!r}")
    return number


def _time(value: Any, index: int, key: str) -> float | None:
    seconds = _real(value, index, key)
    if seconds is not None and not TIME_MIN_S <= seconds < TIME_MAX_S:
        raise _bad(
            index,
            key,
            f"must be epoch seconds in [{TIME_MIN_S:.0f}, {TIME_MAX_S:.0f}) (years 1970 to "
            f"9999), got {seconds!r}",
        )
    return seconds


def _label(value: Any, index: int) -> int | None:
    if value is None:
        return None
    if type(value) is not int and (
        isinstance(value, bool) or not isinstance(value, numbers.Integral)
    ):
        raise _bad(index, "label", f"must be an integer, got {_show(value)}")
    label = int(value)
    if not INT4_MIN <= label <= INT4_MAX:
        raise _bad(index, "label", f"must fit the integer column (int4), got {label}")
    return label


def _features(value: Any, index: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(index, "features", f"must be a mapping of name to number, got {_show(value)}")
    if len(value) > MAX_FEATURES:
        raise _bad(
            index, "features", f"must hold at most {MAX_FEATURES} features, got {len(value)}"
        )
    for name, number in value.items():
        # jsonb refuses \u0000 in a key as PostgreSQL text refuses NUL.
        if type(name) is not str or not _clean_text(name):
            raise _bad(
                index,
                "features",
                f"names must be strings of at most {MAX_TEXT_CHARS} characters without NUL, "
                f"got {_show(name)}",
            )
        if (
            number is not None
            and type(number) is not float
            and (isinstance(number, bool) or not isinstance(number, numbers.Real))
        ):
            raise _bad(index, "features", f"{name!r} must be a number, got {_show(number)}")
    try:
        # jsonb text; orjson writes NaN/inf as null and numpy scalars as numbers.
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError as exc:  # orjson.JSONEncodeError: a number type it cannot write
        raise _bad(index, "features", f"must map names to numbers: {exc}") from exc


def _names(value: Any, index: int) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise _bad(index, "defaults_used", f"must be a list of feature names, got {_show(value)}")
    if len(value) > MAX_FEATURES:
        raise _bad(
            index, "defaults_used", f"must hold at most {MAX_FEATURES} names, got {len(value)}"
        )
    for name in value:
        if type(name) is not str or not _clean_text(name):
            raise _bad(
                index,
                "defaults_used",
                f"names must be strings of at most {MAX_TEXT_CHARS} characters without NUL, "
                f"got {_show(name)}",
            )
    return list(value)


def _flag(value: Any, index: int) -> bool | None:
    if value is None or value is True or value is False:
        return value
    if value not in (True, False):  # admits numpy.bool_ and 0/1
        raise _bad(index, "degraded", f"must be a boolean, got {_show(value)}")
    return bool(value)


def _record(row: Mapping[str, Any], index: int) -> tuple[Any, ...]:
    request_id = row["request_id"]
    if type(request_id) is not str or not request_id or not _clean_text(request_id):
        raise _bad(
            index,
            "request_id",
            f"must be a non-empty string of at most {MAX_TEXT_CHARS} characters without NUL, "
            f"got {_show(request_id)}",
        )
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
        _time(row["received_at"], index, "received_at"),
        _time(row["predicted_at"], index, "predicted_at"),
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
