"""Decoding and validation of inference requests (Kafka records and HTTP bodies).

A Kafka record holds one request (a JSON object) or a batch (a JSON list of objects).
Each request is checked on its own so that one bad item in a batch is rejected alone.
Decoding is total: any bytes give requests or rejections that name the field, never an
exception. Checks are written out by hand: they run for every request in the hot path,
where a ``faust.Record`` with ``validation=True`` costs about 9 us.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.text import NUL_ESCAPE, UnstorableText, unstorable_field

MAX_ID_LENGTH = 256  # characters of request_id and entity_id
MAX_NAME_LENGTH = 128  # characters of a model name or a feature name
MAX_FEATURES = 256  # features in one request
FLOAT32_MAX = 3.4028234663852886e38  # the model casts features to float32
SENT_AT_RANGE = (946_684_800.0, 4_102_444_800.0)  # epoch seconds: 2000-01-01 to 2100-01-01
LENIENT_MAX_DEPTH = 64  # nesting the json fallback may parse (orjson's own limit is 1024)
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
_SHOWN = 64  # characters of client text quoted in an error message


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
        return _item_bytes(self.item, record)


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
    """Decode one record into requests (never empty); never raises for any bytes.

    ``id_factory`` (a zero-argument callable) makes ids for requests without one when
    ``require_request_id`` is False (the HTTP view).
    """
    if raw is None:
        return [RejectedRequest("invalid_json", "record has no value", None, b"", None)]
    if len(raw) > max_bytes:
        message = f"record is {len(raw)} bytes, over the limit of {max_bytes}"
        return [RejectedRequest("too_large", message, None, raw, None)]
    unstorable = False  # a string somewhere holds NUL: check each batch item for it
    try:
        payload = load_json(raw)
    except UnstorableText as exc:
        if not isinstance(exc.payload, list):
            return [RejectedRequest("invalid_request", str(exc), exc.field, raw, None)]
        payload, unstorable = exc.payload, True
    except ValueError as exc:
        return [RejectedRequest("invalid_json", f"invalid JSON: {exc}", None, raw, None)]
    if isinstance(payload, list):
        if not payload:
            return [RejectedRequest("invalid_request", "empty batch", None, raw, None)]
        if len(payload) > max_batch:
            message = f"batch holds {len(payload)} requests, over the limit of {max_batch}"
            return [RejectedRequest("batch_too_large", message, None, raw, None)]
        decoded: list[Decoded] = []
        for index, item in enumerate(payload):
            rejected = _unstorable_item(item, index, raw) if unstorable else None
            decoded.append(
                rejected
                or _decode_item(item, index, raw, default_model, require_request_id, id_factory)
            )
        return decoded
    return [_decode_item(payload, None, raw, default_model, require_request_id, id_factory)]


def load_json(raw: bytes) -> Any:
    """Decode JSON; raises only ``ValueError`` (with the parser's message) if it is not JSON.

    ``NaN``, ``Infinity`` and numbers beyond float range are let through here (as float
    NaN and infinities) so that validation can name the field that holds one. Strings
    are always valid Unicode: a lone surrogate escape is invalid JSON. A string (key or
    value) holding NUL raises ``UnstorableText`` (a ValidationError and a ValueError)
    naming its field: PostgreSQL could not store it (``messages.text``).
    """
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        payload = _lenient_loads(raw)
        if payload is _INVALID:
            raise ValueError(shorten(str(exc), 200)) from exc
    # The byte scan is cheap; the walk runs only for the rare record that has the escape.
    if NUL_ESCAPE in raw:
        found = unstorable_field(payload)
        if found is not None:
            raise UnstorableText(shorten(found[0], 200), found[1], payload)
    return payload


_INVALID = object()
# A string, or an unterminated one up to the end: always matching keeps ``sub`` linear
# (a pattern that can fail would be retried from every later quote: quadratic).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _lenient_loads(raw: bytes) -> Any:
    """Python's parser, for what orjson refuses but validation should name; or _INVALID.

    Bounded on purpose: strict UTF-8 (``json.loads`` of bytes would guess UTF-16/32),
    nesting checked before its recursive parser runs, integers beyond 64 bits read as
    floats like orjson does (which also avoids ``int()``'s 4300-digit limit).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _INVALID
    if _deeper_than(text, LENIENT_MAX_DEPTH):
        return _INVALID
    try:
        payload = json.loads(text, parse_int=_int_or_float)
        if "\\u" in text:
            # A "\ud800" escape decodes to a str that cannot be encoded: refuse it here,
            # as orjson does, so that no decoded string can break an encoder later.
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except ValueError:  # JSONDecodeError and UnicodeEncodeError are ValueErrors
        return _INVALID
    return payload


def _deeper_than(text: str, limit: int) -> bool:
    """Whether arrays and objects in ``text`` nest deeper than ``limit`` levels."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for char in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        depth += 1 if char in "[{" else -1
        if depth > limit:
            return True
    return False


def _int_or_float(digits: str) -> int | float:
    if len(digits) <= 20:  # "-9223372036854775808" and "18446744073709551615"
        number = int(digits)
        if _INT64_MIN <= number <= _UINT64_MAX:
            return number
    return float(digits)  # inf beyond float range; validation names the field


def _item_bytes(item: Any, record: bytes) -> bytes:
    """``item`` re-encoded, or the whole ``record`` if orjson cannot encode it (too deep)."""
    try:
        return orjson.dumps(item)
    except orjson.JSONEncodeError:
        return record


def _unstorable_item(item: Any, index: int, record: bytes) -> RejectedRequest | None:
    """The rejection of a batch item holding text PostgreSQL cannot store, or None."""
    found = unstorable_field(item)
    if found is None:
        return None
    field, reason = shorten(found[0], 200), found[1]
    original = _item_bytes(item, record)
    return RejectedRequest("invalid_request", f"{field}: {reason}", field, original, index)


def _decode_item(
    item: Any,
    index: int | None,
    record: bytes,
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
        original = record if index is None else _item_bytes(item, record)
        return RejectedRequest("invalid_request", str(exc), exc.field, original, index)


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
    # Fast paths for the common shape (short ASCII strings); anything else is checked
    # below. ASCII strings can always be encoded, which the router's hashing needs.
    if not (
        type(request_id) is str and 0 < len(request_id) <= MAX_ID_LENGTH and request_id.isascii()
    ):
        request_id = _identifier("request_id", request_id)
    if not (type(entity_id) is str and 0 < len(entity_id) <= MAX_ID_LENGTH and entity_id.isascii()):
        entity_id = _identifier("entity_id", entity_id)
    model = item.get("model")
    if model is None:
        model = default_model
    elif not (type(model) is str and 0 < len(model) <= MAX_NAME_LENGTH and model.isascii()):
        model = _name("model", model, MAX_NAME_LENGTH)
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


def _identifier(field: str, value: Any) -> str:
    if value is None:
        raise ValidationError(field, "is required")
    if type(value) is int:
        if not _INT64_MIN <= value <= _UINT64_MAX:
            raise ValidationError(field, "an integer id must fit in 64 bits")
        return str(value)
    if type(value) is not str:
        raise ValidationError(field, f"must be a string or a 64-bit integer, not {_kind(value)}")
    return _name(field, value, MAX_ID_LENGTH)


def _name(field: str, value: Any, limit: int) -> str:
    if type(value) is not str:
        raise ValidationError(field, f"must be a string, not {_kind(value)}")
    if not 0 < len(value) <= limit:
        raise ValidationError(field, f"must be 1 to {limit} characters, not {len(value)}")
    if not _encodable(value):
        raise ValidationError(field, "must be valid Unicode (it holds a lone surrogate)")
    return value


_ONLY_FLOAT = frozenset({float})


def _features(value: Any) -> Mapping[str, float]:
    if not isinstance(value, dict):
        raise ValidationError("features", f"must be an object of numbers, not {_kind(value)}")
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
            _name(_feature_field(name), name, MAX_NAME_LENGTH)
            if len(_CHECKED_NAMES) < _CHECKED_NAMES_MAX:
                _CHECKED_NAMES.add(name)
        if type(number) is int and -FLOAT32_MAX <= number <= FLOAT32_MAX:
            out[name] = float(number)
        else:
            out[name] = _number(_feature_field(name), number)
    return out


def _feature_field(name: Any) -> str:
    return f"features.{shorten(str(name))}"


# Feature names that passed _name once: a set lookup is the cheapest re-check (about
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
        raise ValidationError(field, f"must be a number, not {_kind(value)}")
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


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shorten(text: str, limit: int = _SHOWN) -> str:
    """``text`` cut to ``limit`` characters, lone surrogates escaped: safe in any error."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
