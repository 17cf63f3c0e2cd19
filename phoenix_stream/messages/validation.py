"""Checks shared by every decoder of outside input: JSON, ids, the one-or-a-list envelope.

A Kafka record of ``requests`` or ``feedback`` holds one item (a JSON object) or a list
of them. ``decode_items`` owns that envelope: the size limit, the JSON, an empty or
overlong list, text PostgreSQL cannot store; each item is then parsed on its own, so
one bad item in a list is rejected alone. Decoding is total: any bytes give items or
rejections naming the field, never an exception. Control records and HTTP bodies use
``load_json`` and ``shorten`` the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.text import NUL_ESCAPE, UnstorableText, unstorable_field

__all__ = [
    "EPOCH_RANGE",
    "INT64_MIN",
    "LENIENT_MAX_DEPTH",
    "MAX_ID_LENGTH",
    "UINT64_MAX",
    "Envelope",
    "Rejected",
    "check_name",
    "decode_items",
    "decode_json",
    "identifier",
    "item_bytes",
    "kind_of",
    "load_json",
    "shorten",
]

MAX_ID_LENGTH = 256  # characters of a request_id or an entity_id
EPOCH_RANGE = (946_684_800.0, 4_102_444_800.0)
"""Accepted timestamps, epoch seconds (2000-01-01 to 2100-01-01 UTC): milliseconds sent
by mistake land far beyond and are refused, not stored as the year 55,000."""
LENIENT_MAX_DEPTH = 64  # nesting the json fallback may parse (orjson's own limit is 1024)
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1
_SHOWN = 64  # characters of client text quoted in an error message
# Model names and versions become path components: no separators, no leading dot.
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

Parsed = TypeVar("Parsed")


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item (or a whole record) that failed; carries what a dead letter needs."""

    kind: str  # invalid_json | too_large | batch_too_large | the envelope's invalid_kind
    error: str
    field: str | None
    original: bytes  # the whole record, or this item re-encoded when inside a list
    batch_index: int | None


Rejection = TypeVar("Rejection", bound=Rejected)


@dataclass(frozen=True, slots=True)
class Envelope:
    """How one kind of record names its items in errors.

    ``invalid_kind`` is the rejection kind of an item that is JSON but not valid (and
    of an empty list); ``empty`` the error of an empty list; ``over_limit`` that of a
    list over ``max_batch``, formatted with ``count`` and ``limit``.
    """

    invalid_kind: str
    empty: str
    over_limit: str


def decode_items(
    raw: bytes | None,
    *,
    max_bytes: int,
    max_batch: int,
    envelope: Envelope,
    parse: Callable[[Any, int | None], Parsed],
    reject: type[Rejection],
) -> list[Parsed | Rejection]:
    """One record's items (never an empty list); never raises for any bytes.

    ``parse(item, index)`` validates one decoded item (``index`` its position in a list,
    None for a record of one item) and raises ``ValidationError`` naming the field;
    ``reject`` is the decoder's own ``Rejected`` class. Rejection kinds:
    ``invalid_json``, ``too_large``, ``batch_too_large`` and ``envelope.invalid_kind``.
    """
    if raw is None:
        return [reject("invalid_json", "record has no value", None, b"", None)]
    if len(raw) > max_bytes:
        error = f"record is {len(raw)} bytes, over the limit of {max_bytes}"
        return [reject("too_large", error, None, raw, None)]
    check_text = False  # a string somewhere holds NUL: check each list item for it
    try:
        payload = load_json(raw)
    except UnstorableText as exc:
        if not isinstance(exc.payload, list):
            return [reject(envelope.invalid_kind, str(exc), exc.field, raw, None)]
        payload, check_text = exc.payload, True
    except ValueError as exc:
        return [reject("invalid_json", f"invalid JSON: {exc}", None, raw, None)]
    if not isinstance(payload, list):
        return [_item(payload, None, raw, parse, reject, envelope, False)]
    if not payload:
        return [reject(envelope.invalid_kind, envelope.empty, None, raw, None)]
    if len(payload) > max_batch:
        error = envelope.over_limit.format(count=len(payload), limit=max_batch)
        return [reject("batch_too_large", error, None, raw, None)]
    return [
        _item(item, index, raw, parse, reject, envelope, check_text)
        for index, item in enumerate(payload)
    ]


def _item(
    item: Any,
    index: int | None,
    record: bytes,
    parse: Callable[[Any, int | None], Parsed],
    reject: type[Rejection],
    envelope: Envelope,
    check_text: bool,
) -> Parsed | Rejection:
    try:
        found = unstorable_field(item) if check_text else None
        if found is not None:
            raise ValidationError(shorten(found[0], 200), found[1])
        return parse(item, index)
    except ValidationError as exc:
        original = record if index is None else item_bytes(item, record)
        return reject(envelope.invalid_kind, str(exc), exc.field, original, index)


def item_bytes(item: Any, record: bytes) -> bytes:
    """``item`` re-encoded, or the whole ``record`` if orjson cannot encode it (too deep)."""
    try:
        return orjson.dumps(item)
    except orjson.JSONEncodeError:
        return record


def is_identifier(text: str) -> bool:
    """Whether text is usable as a model name or version (a safe single path component)."""
    return _IDENTIFIER.fullmatch(text) is not None


def model_name(data: Mapping[str, Any], key: str) -> str:
    """``data[key]`` as a model name or version (``is_identifier``); ValidationError
    naming ``key`` otherwise."""
    value = data.get(key)
    if not isinstance(value, str) or not is_identifier(value):
        raise ValidationError(key, "must be a model name or version (letters, digits, ._-)")
    return value


def identifier(field: str, value: Any, *, forbid_nul: bool = False) -> str:
    """An id: a string of 1 to ``MAX_ID_LENGTH`` characters, or a 64-bit integer kept as
    its decimal text; raises ``ValidationError`` naming ``field``.

    ``forbid_nul`` for ids that reach PostgreSQL without passing ``load_json``'s scan.
    """
    if value is None:
        raise ValidationError(field, "is required")
    if type(value) is int:
        if not INT64_MIN <= value <= UINT64_MAX:
            raise ValidationError(field, "an integer id must fit in 64 bits")
        return str(value)
    if type(value) is not str:
        raise ValidationError(field, f"must be a string or a 64-bit integer, not {kind_of(value)}")
    return check_name(field, value, MAX_ID_LENGTH, forbid_nul=forbid_nul)


def check_name(field: str, value: Any, limit: int, *, forbid_nul: bool = False) -> str:
    """A string of 1 to ``limit`` characters that UTF-8 can encode."""
    if type(value) is not str:
        raise ValidationError(field, f"must be a string, not {kind_of(value)}")
    if not 0 < len(value) <= limit:
        raise ValidationError(field, f"must be 1 to {limit} characters, not {len(value)}")
    if forbid_nul and "\x00" in value:
        raise ValidationError(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field, "must be valid Unicode (it holds a lone surrogate)") from None
    return value


def decode_json(raw: bytes | None, max_bytes: int | None = None) -> Any:
    """The JSON value of one record's bytes, for the control and report decoders.

    ValidationError naming ``$`` for a missing value, one over ``max_bytes`` or invalid
    JSON, or naming the field of text PostgreSQL could not store (``UnstorableText``).
    """
    if raw is None:
        raise ValidationError("$", "record has no value")
    if max_bytes is not None and len(raw) > max_bytes:
        raise ValidationError("$", f"is {len(raw)} bytes, over the limit of {max_bytes}")
    try:
        return load_json(raw)
    except UnstorableText:
        raise  # a ValidationError naming the field already
    except ValueError as exc:
        raise ValidationError("$", f"invalid JSON: {shorten(str(exc), 200)}") from exc


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
        if INT64_MIN <= number <= UINT64_MAX:
            return number
    return float(digits)  # inf beyond float range; validation names the field


def shorten(text: str, limit: int = _SHOWN) -> str:
    """``text`` cut to ``limit`` characters, lone surrogates escaped: safe in any error."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def kind_of(value: Any) -> str:
    """A JSON value's type as a client would name it (``null``, ``array``, ...)."""
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
