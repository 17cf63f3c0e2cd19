"""Decoding and validation of inference requests (Kafka records and HTTP bodies).

A Kafka record holds one request (a JSON object) or a batch (a JSON list of objects).
Each request is checked on its own so that one bad item in a batch is rejected alone.
Decoding is total: any bytes give requests or rejections that name the field, never an
exception. Checks are written out by hand: they run for every request in the hot path,
where a ``faust.Record`` with ``validation=True`` costs about 9 us.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.validation import (
    EPOCH_RANGE,
    MAX_ID_LENGTH,
    Envelope,
    Rejected,
    check_name,
    decode_items,
    identifier,
    item_bytes,
    kind_of,
    shorten,
)

MAX_NAME_LENGTH = 128  # characters of a model name or a feature name
MAX_FEATURES = 256  # features in one request
FLOAT32_MAX = 3.4028234663852886e38  # the model casts features to float32
SENT_AT_RANGE = EPOCH_RANGE  # epoch seconds: 2000-01-01 to 2100-01-01


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A request that passed validation; ``model`` is already defaulted."""

    request_id: str
    entity_id: str
    model: str
    features: Mapping[str, float] | None
    sent_at: float | None
    batch_index: int | None  # position inside a batch record, None for a single request
    item: Any = None  # the decoded JSON object, to dead-letter a batch item later

    def original_bytes(self, record: bytes) -> bytes:
        """What a dead letter should carry: the record, or this item of a batch record."""
        if self.batch_index is None:
            return record
        return item_bytes(self.item, record)


class RejectedRequest(Rejected):
    """A request (or a whole record) that failed.

    Kinds: invalid_json, invalid_request, too_large, batch_too_large.
    """

    __slots__ = ()


Decoded = ParsedRequest | RejectedRequest


_ENVELOPE = Envelope(
    invalid_kind="invalid_request",
    empty="empty batch",
    over_limit="batch holds {count} requests, over the limit of {limit}",
)


def decode_record(
    raw: bytes | None,
    *,
    default_model: str,
    max_bytes: int,
    max_batch: int,
    require_request_id: bool = True,
    id_factory: Any = None,
) -> list[Decoded]:
    """Decode one record into requests (never empty); never raises for any bytes.

    ``id_factory`` (a zero-argument callable) makes ids for requests without one when
    ``require_request_id`` is False (the HTTP view).
    """

    def parse(item: Any, index: int | None) -> ParsedRequest:
        return parse_request(
            item,
            default_model=default_model,
            batch_index=index,
            require_request_id=require_request_id,
            id_factory=id_factory,
        )

    return decode_items(
        raw,
        max_bytes=max_bytes,
        max_batch=max_batch,
        envelope=_ENVELOPE,
        reject=RejectedRequest,
        parse=parse,
    )


def parse_request(
    item: Any,
    *,
    default_model: str,
    batch_index: int | None = None,
    require_request_id: bool = True,
    id_factory: Any = None,
) -> ParsedRequest:
    """Validate one decoded JSON request; raises ``ValidationError`` naming the field."""
    if not isinstance(item, dict):
        raise ValidationError("$", f"a request must be a JSON object, not {kind_of(item)}")
    request_id = item.get("request_id")
    if request_id is None and not require_request_id and id_factory is not None:
        request_id = id_factory()
    entity_id = item.get("entity_id")
    # Fast paths for the common shape (short ASCII strings); anything else is checked
    # below. ASCII strings can always be encoded, which the router's hashing needs.
    if not (
        type(request_id) is str and 0 < len(request_id) <= MAX_ID_LENGTH and request_id.isascii()
    ):
        request_id = identifier("request_id", request_id)
    if not (type(entity_id) is str and 0 < len(entity_id) <= MAX_ID_LENGTH and entity_id.isascii()):
        entity_id = identifier("entity_id", entity_id)
    model = item.get("model")
    if model is None:
        model = default_model
    elif not (type(model) is str and 0 < len(model) <= MAX_NAME_LENGTH and model.isascii()):
        model = check_name("model", model, MAX_NAME_LENGTH)
    features = item.get("features")
    if features is not None:
        features = _features(features)
    sent_at = item.get("sent_at")
    if sent_at is not None and not (
        type(sent_at) is float and SENT_AT_RANGE[0] <= sent_at <= SENT_AT_RANGE[1]
    ):
        sent_at = _sent_at(sent_at)
    if not _FIELDS.issuperset(item):
        raise ValidationError(shorten(sorted(map(str, item.keys() - _FIELDS))[0]), "unknown field")
    return ParsedRequest(request_id, entity_id, model, features, sent_at, batch_index, item)


_FIELDS = frozenset({"request_id", "entity_id", "model", "features", "sent_at"})


_ONLY_FLOAT = frozenset({float})


def _features(value: Any) -> Mapping[str, float]:
    if not isinstance(value, dict):
        raise ValidationError("features", f"must be an object of numbers, not {kind_of(value)}")
    if len(value) > MAX_FEATURES:
        raise ValidationError(
            "features", f"holds {len(value)} features, over the limit of {MAX_FEATURES}"
        )
    values = value.values()
    # Fast path: all floats whose absolute sum is within float32 range are each within
    # it (NaN fails the comparison, infinity exceeds it); names checked before.
    if (
        _ONLY_FLOAT.issuperset(map(type, values))
        and sum(map(abs, values)) <= FLOAT32_MAX
        and _CHECKED_NAMES.issuperset(value)
    ):
        return value
    out: dict[str, float] = {}
    for name, number in value.items():
        if name not in _CHECKED_NAMES:
            check_name(_feature_field(name), name, MAX_NAME_LENGTH)
            if len(_CHECKED_NAMES) < _CHECKED_NAMES_MAX:
                _CHECKED_NAMES.add(name)
        if type(number) is int and -FLOAT32_MAX <= number <= FLOAT32_MAX:
            out[name] = float(number)
        else:
            out[name] = _number(_feature_field(name), number)
    return out


def _feature_field(name: Any) -> str:
    return f"features.{shorten(str(name))}"


# Feature names that passed check_name once: a set lookup is the cheapest re-check (about
# 50 ns for ten names, where checking lengths and ASCII costs 800 ns). Bounded, so a
# client sending ever new names cannot grow it; names beyond it are checked each time.
_CHECKED_NAMES: set[str] = set()
_CHECKED_NAMES_MAX = 4096


def _number(field: str, value: Any) -> float:
    """``value`` as a float within float32 range (what the model casts features to)."""
    if type(value) is float:
        number = value
    elif type(value) is int:
        # Compared as int: float() of a 400-digit integer raises OverflowError.
        if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
            raise ValidationError(field, f"must be within float32 range (±{FLOAT32_MAX:.8g})")
        number = float(value)
    else:
        raise ValidationError(field, f"must be a number, not {kind_of(value)}")
    if not -FLOAT32_MAX <= number <= FLOAT32_MAX:
        if math.isnan(number) or math.isinf(number):
            raise ValidationError(field, "must be a finite number")
        raise ValidationError(field, f"must be within float32 range (±{FLOAT32_MAX:.8g})")
    return number


def _sent_at(value: Any) -> float:
    number = _number("sent_at", value)
    low, high = SENT_AT_RANGE
    if not low <= number <= high:
        raise ValidationError(
            "sent_at", f"must be epoch seconds between {low:.0f} and {high:.0f}, not {number:.6g}"
        )
    return number
