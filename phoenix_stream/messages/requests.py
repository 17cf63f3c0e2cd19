"""Decoding and validation of inference requests (Kafka records and HTTP bodies).

A Kafka record holds one request (a JSON object) or a batch (a JSON list of objects).
Each request is checked on its own so that one bad item in a batch is rejected alone.
Checks are written out by hand: they run for every request in the hot path, where a
``faust.Record`` with ``validation=True`` costs about 9 us.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from phoenix_stream.exceptions import ValidationError

MAX_ID_LENGTH = 256


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
        return orjson.dumps(self.item)


@dataclass(frozen=True, slots=True)
class RejectedRequest:
    """A request (or a whole record) that failed; carries what a dead letter needs."""

    kind: str  # invalid_json | invalid_request | too_large | batch_too_large
    error: str
    field: str | None
    original: bytes  # the whole record, or this item re-encoded when inside a batch
    batch_index: int | None


Decoded = ParsedRequest | RejectedRequest


def decode_record(
    raw: bytes | None,
    *,
    default_model: str,
    max_bytes: int,
    max_batch: int,
    require_request_id: bool = True,
    id_factory: Any = None,
) -> list[Decoded]:
    """Decode one record into requests; never raises for bad input.

    ``id_factory`` (a zero-argument callable) makes ids for requests without one when
    ``require_request_id`` is False (the HTTP view).
    """
    if raw is None:
        return [RejectedRequest("invalid_json", "record has no value", None, b"", None)]
    if len(raw) > max_bytes:
        message = f"record is {len(raw)} bytes, over the limit of {max_bytes}"
        return [RejectedRequest("too_large", message, None, raw, None)]
    try:
        payload = load_json(raw)
    except ValueError as exc:
        return [RejectedRequest("invalid_json", f"invalid JSON: {exc}", None, raw, None)]
    if isinstance(payload, list):
        if not payload:
            return [RejectedRequest("invalid_request", "empty batch", None, raw, None)]
        if len(payload) > max_batch:
            message = f"batch holds {len(payload)} requests, over the limit of {max_batch}"
            return [RejectedRequest("batch_too_large", message, None, raw, None)]
        return [
            _decode_item(item, index, None, default_model, require_request_id, id_factory)
            for index, item in enumerate(payload)
        ]
    return [_decode_item(payload, None, raw, default_model, require_request_id, id_factory)]


def load_json(raw: bytes) -> Any:
    """Decode JSON; raises ``ValueError`` with the parser's message when it is not JSON.

    ``NaN`` and ``Infinity`` (which Python's ``json.dumps`` writes) are let through here
    so that validation can name the feature that holds one.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ValueError(str(exc)) from exc


def _decode_item(
    item: Any,
    index: int | None,
    original: bytes | None,
    default_model: str,
    require_request_id: bool,
    id_factory: Any,
) -> Decoded:
    try:
        return parse_request(
            item,
            default_model=default_model,
            batch_index=index,
            require_request_id=require_request_id,
            id_factory=id_factory,
        )
    except ValidationError as exc:
        raw = original if original is not None else orjson.dumps(item)
        return RejectedRequest("invalid_request", str(exc), exc.field, raw, index)


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
        raise ValidationError("$", f"a request must be a JSON object, not {_kind(item)}")
    request_id = item.get("request_id")
    if request_id is None and not require_request_id and id_factory is not None:
        request_id = id_factory()
    entity_id = item.get("entity_id")
    # Fast path for the common shape (two short strings); anything else is checked below.
    if not (type(request_id) is str and 0 < len(request_id) <= MAX_ID_LENGTH):
        request_id = _identifier("request_id", request_id)
    if not (type(entity_id) is str and 0 < len(entity_id) <= MAX_ID_LENGTH):
        entity_id = _identifier("entity_id", entity_id)
    model = item.get("model")
    if model is None:
        model = default_model
    elif type(model) is not str or not model:
        raise ValidationError("model", "must be a non-empty string")
    features = item.get("features")
    if features is not None:
        features = _features(features)
    sent_at = item.get("sent_at")
    if sent_at is not None:
        sent_at = _finite("sent_at", sent_at)
    if not _FIELDS.issuperset(item):
        raise ValidationError(sorted(item.keys() - _FIELDS)[0], "unknown field")
    return ParsedRequest(request_id, entity_id, model, features, sent_at, batch_index, item)


_FIELDS = frozenset({"request_id", "entity_id", "model", "features", "sent_at"})


def _identifier(name: str, value: Any) -> str:
    if value is None:
        raise ValidationError(name, "is required")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError(name, f"must be a string, not {_kind(value)}")
    text = str(value)
    if not text or len(text) > MAX_ID_LENGTH:
        raise ValidationError(name, f"must be 1 to {MAX_ID_LENGTH} characters")
    return text


_ONLY_FLOAT = frozenset({float})


def _features(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValidationError("features", f"must be an object of numbers, not {_kind(value)}")
    # Fast path: all floats with a finite sum are all finite (NaN or inf poisons a sum).
    if _ONLY_FLOAT.issuperset(map(type, value.values())) and math.isfinite(sum(value.values())):
        return value
    out: dict[str, float] = {}
    for name, number in value.items():
        out[name] = _finite(f"features.{name}", number)
    return out


def _finite(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field, f"must be a number, not {_kind(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ValidationError(field, "must be a finite number")
    return number


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )
