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
from phoenix_stream.messages.validation import (
    EPOCH_RANGE,
    Envelope,
    Rejected,
    decode_items,
    identifier,
    kind_of,
    shorten,
)

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
OBSERVED_AT_RANGE = EPOCH_RANGE  # accepted ``observed_at``, epoch seconds


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


class RejectedFeedback(Rejected):
    """A feedback item (or a whole record) that failed.

    Kinds: invalid_json, too_large, batch_too_large, invalid_feedback.
    """

    __slots__ = ()


DecodedFeedback = ParsedFeedback | RejectedFeedback


_ENVELOPE = Envelope(
    invalid_kind="invalid_feedback",
    empty="empty list",
    over_limit="list holds {count} items, over the limit of {limit}",
)


def decode_feedback(
    raw: bytes | None, *, now: float, max_bytes: int, max_batch: int
) -> list[DecodedFeedback]:
    """Decode one record into feedback items (never empty); never raises for any bytes.

    ``now`` (epoch seconds) is the ``observed_at`` of items that give none.
    """
    return decode_items(
        raw,
        max_bytes=max_bytes,
        max_batch=max_batch,
        envelope=_ENVELOPE,
        reject=RejectedFeedback,
        parse=lambda item, index: parse_feedback(item, now=now, batch_index=index),
    )


def parse_feedback(item: Any, *, now: float, batch_index: int | None = None) -> ParsedFeedback:
    """Validate one decoded JSON feedback item; raises ``ValidationError`` naming the field.

    ``request_id`` is a string (or a 64-bit integer, kept as its decimal string, as
    requests allow); ``label`` is the integer 0 or 1 (not a boolean, not 1.0).
    """
    if not isinstance(item, dict):
        raise ValidationError("$", f"feedback must be a JSON object, not {kind_of(item)}")
    request_id = identifier("request_id", item.get("request_id"), forbid_nul=True)
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


def _observed_at(value: Any) -> float:
    if type(value) is int:
        number = float(value) if abs(value) < 2**63 else float("inf")
    elif type(value) is float:
        number = value
    else:
        raise ValidationError("observed_at", f"must be a number, not {kind_of(value)}")
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
    return kind_of(value)
