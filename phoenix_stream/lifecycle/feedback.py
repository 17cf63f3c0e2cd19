"""Decoding and validation of feedback: the true outcome of a served request.

A feedback item is ``{"request_id": str, "label": 0 | 1, "observed_at": epoch seconds}``
(``observed_at`` optional, default: when it was decoded). A Kafka record of the
``feedback`` topic (key: request_id) holds one item or a JSON list of items, and each
item is checked on its own, so one bad item in a list is rejected alone. Decoding is
total: any bytes give items or rejections naming the field, never an exception.
Rejection kinds: ``invalid_json``, ``too_large``, ``batch_too_large`` (as for requests)
and ``invalid_feedback`` for an item that is JSON but not valid feedback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.requests import MAX_ID_LENGTH, SENT_AT_RANGE, load_json, shorten
from phoenix_stream.messages.text import UnstorableText, unstorable_field

__all__ = [
    "FIELDS",
    "OBSERVED_AT_RANGE",
    "DecodedFeedback",
    "ParsedFeedback",
    "RejectedFeedback",
    "decode_feedback",
    "parse_feedback",
]

FIELDS = frozenset({"request_id", "label", "observed_at"})
OBSERVED_AT_RANGE = SENT_AT_RANGE
"""Accepted ``observed_at``, epoch seconds (2000-01-01 to 2100-01-01 UTC): milliseconds
by mistake land far beyond and are refused, not stored as the year 55,000."""
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


@dataclass(frozen=True, slots=True)
class ParsedFeedback:
    """A feedback item that passed validation; ``observed_at`` in epoch seconds."""

    request_id: str
    label: int  # 0 or 1
    observed_at: float
    batch_index: int | None = None  # position inside a list record, None for one item

    def to_json(self) -> bytes:
        """The item as the ``feedback`` topic carries it (observed_at filled in)."""
        return orjson.dumps(
            {"request_id": self.request_id, "label": self.label, "observed_at": self.observed_at}
        )


@dataclass(frozen=True, slots=True)
class RejectedFeedback:
    """A feedback item (or a whole record) that failed; carries what a dead letter needs."""

    kind: str  # invalid_json | too_large | batch_too_large | invalid_feedback
    error: str
    field: str | None
    original: bytes  # the whole record, or this item re-encoded when inside a list
    batch_index: int | None


DecodedFeedback = ParsedFeedback | RejectedFeedback


def decode_feedback(
    raw: bytes | None, *, now: float, max_bytes: int, max_batch: int
) -> list[DecodedFeedback]:
    """Decode one record into feedback items (never empty); never raises for any bytes.

    ``now`` (epoch seconds) is the ``observed_at`` of items that give none.
    """
    if raw is None:
        return [RejectedFeedback("invalid_json", "record has no value", None, b"", None)]
    if len(raw) > max_bytes:
        message = f"record is {len(raw)} bytes, over the limit of {max_bytes}"
        return [RejectedFeedback("too_large", message, None, raw, None)]
    unstorable = False  # a string somewhere holds NUL: check each item for it
    try:
        payload = load_json(raw)
    except UnstorableText as exc:
        if not isinstance(exc.payload, list):
            return [RejectedFeedback("invalid_feedback", str(exc), exc.field, raw, None)]
        payload, unstorable = exc.payload, True
    except ValueError as exc:
        return [RejectedFeedback("invalid_json", f"invalid JSON: {exc}", None, raw, None)]
    if isinstance(payload, list):
        if not payload:
            return [RejectedFeedback("invalid_feedback", "empty list", None, raw, None)]
        if len(payload) > max_batch:
            message = f"list holds {len(payload)} items, over the limit of {max_batch}"
            return [RejectedFeedback("batch_too_large", message, None, raw, None)]
        return [
            _decode_item(item, index, raw, now, unstorable) for index, item in enumerate(payload)
        ]
    return [_decode_item(payload, None, raw, now)]


def _decode_item(
    item: Any, index: int | None, record: bytes, now: float, check_text: bool = False
) -> DecodedFeedback:
    try:
        found = unstorable_field(item) if check_text else None
        if found is not None:
            raise ValidationError(shorten(found[0], 200), found[1])
        return parse_feedback(item, now=now, batch_index=index)
    except ValidationError as exc:
        original = record if index is None else _item_bytes(item, record)
        return RejectedFeedback("invalid_feedback", str(exc), exc.field, original, index)


def _item_bytes(item: Any, record: bytes) -> bytes:
    """``item`` re-encoded, or the whole ``record`` if orjson cannot encode it (too deep)."""
    try:
        return orjson.dumps(item)
    except orjson.JSONEncodeError:
        return record


def parse_feedback(item: Any, *, now: float, batch_index: int | None = None) -> ParsedFeedback:
    """Validate one decoded JSON feedback item; raises ``ValidationError`` naming the field.

    ``request_id`` is a string (or a 64-bit integer, kept as its decimal string, as
    requests allow); ``label`` is the integer 0 or 1 (not a boolean, not 1.0).
    """
    if not isinstance(item, dict):
        raise ValidationError("$", f"feedback must be a JSON object, not {_kind(item)}")
    request_id = _request_id(item.get("request_id"))
    label = item.get("label")
    if label is None:
        raise ValidationError("label", "is required")
    if type(label) is not int or label not in (0, 1):
        raise ValidationError("label", f"must be 0 or 1, not {_shown(label)}")
    observed_at = item.get("observed_at")
    observed = now if observed_at is None else _observed_at(observed_at)
    if not FIELDS.issuperset(item):
        raise ValidationError(shorten(sorted(map(str, item.keys() - FIELDS))[0]), "unknown field")
    return ParsedFeedback(request_id, label, observed, batch_index)


def _request_id(value: Any) -> str:
    if value is None:
        raise ValidationError("request_id", "is required")
    if type(value) is int:
        if not _INT64_MIN <= value <= _UINT64_MAX:
            raise ValidationError("request_id", "an integer id must fit in 64 bits")
        return str(value)
    if type(value) is not str:
        raise ValidationError(
            "request_id", f"must be a string or a 64-bit integer, not {_kind(value)}"
        )
    if not 0 < len(value) <= MAX_ID_LENGTH:
        raise ValidationError(
            "request_id", f"must be 1 to {MAX_ID_LENGTH} characters, not {len(value)}"
        )
    # PostgreSQL text holds neither NUL nor a lone surrogate: refuse them here, by name.
    if "\x00" in value:
        raise ValidationError("request_id", "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(
            "request_id", "must be valid Unicode (it holds a lone surrogate)"
        ) from None
    return value


def _observed_at(value: Any) -> float:
    if type(value) is int:
        number = float(value) if abs(value) < 2**63 else float("inf")
    elif type(value) is float:
        number = value
    else:
        raise ValidationError("observed_at", f"must be a number, not {_kind(value)}")
    low, high = OBSERVED_AT_RANGE
    if not low <= number <= high:  # also NaN and infinities
        raise ValidationError(
            "observed_at",
            f"must be epoch seconds between {low:.0f} and {high:.0f}, not {number:.6g}",
        )
    return number


def _shown(value: Any) -> str:
    """A label value quoted in an error: small and always printable."""
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        # str() of an integer beyond 4,300 digits raises; a label is never that long.
        return str(value) if -(10**20) < value < 10**20 else "a large integer"
    if type(value) is float:
        return repr(value)
    return _kind(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)
