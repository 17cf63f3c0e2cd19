"""Text that PostgreSQL can store: the one check every decoder of outside input shares.

PostgreSQL ``text`` (and ``jsonb``, keys and values) cannot hold the NUL character, nor
a lone surrogate (it is not UTF-8). JSON can carry both (``"\\u0000"``, ``"\\ud800"``), so
a record could be predicted on Kafka and only then be refused by the sink: the topic and
the table would disagree. ``load_json`` (``messages.validation``) refuses lone surrogates as
invalid JSON and calls :func:`unstorable_field` when the raw bytes hold a NUL escape, so
every decoder refuses such text where it enters, naming the field.
"""

from __future__ import annotations

from typing import Any

from phoenix_stream.exceptions import ValidationError

__all__ = ["NUL_ESCAPE", "UnstorableText", "unstorable_field", "unstorable_reason"]

NUL_ESCAPE = b"\\u0000"
"""How a NUL appears in JSON: raw control characters are invalid JSON inside strings."""


class UnstorableText(ValidationError, ValueError):
    """A string of decoded JSON that PostgreSQL cannot store; ``field`` is its dotted path.

    A ValueError too, so callers that treat undecodable bytes as bad input still refuse
    it; ``payload`` is the decoded value, for decoders that reject items one by one.
    """

    def __init__(self, field: str, message: str, payload: Any) -> None:
        super().__init__(field, message)
        self.payload = payload


def unstorable_reason(text: str) -> str | None:
    """Why PostgreSQL text cannot hold ``text``, or None when it can."""
    if "\x00" in text:
        return "must not contain NUL characters (PostgreSQL text cannot store them)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (it holds a lone surrogate)"
    return None


def unstorable_field(value: Any, path: str = "") -> tuple[str, str] | None:
    """``(dotted path, reason)`` of the first string (key or value) in ``value`` that
    PostgreSQL cannot store, or None. A bad key is named by its object's path; list
    items by their index; ``$`` is the value itself."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:  # iterative: decoded JSON may nest up to orjson's 1024 levels
        item, where = stack.pop()
        if isinstance(item, str):
            reason = unstorable_reason(item)
            if reason is not None:
                return where or "$", reason
        elif isinstance(item, dict):
            children: list[tuple[Any, str]] = []
            for key, child in item.items():
                reason = unstorable_reason(key) if isinstance(key, str) else None
                if reason is not None:
                    return where or "$", f"a field name {reason}"
                children.append((child, f"{where}.{key}" if where else str(key)))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(
                (child, f"{where}.{index}" if where else str(index))
                for index, child in reversed(list(enumerate(item)))
            )
    return None
