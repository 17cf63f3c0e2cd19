"""Control records that cannot be forged: an HMAC-SHA256 tag on every record of the
``deployments`` and ``retrain`` topics.

The tag (field ``auth``, lowercase hex) is computed over a canonical form of the record:
sorted-key compact JSON of ``{"topic": <full topic name>, "record": <every field but
auth>}``. The topic is in it so that a record signed for ``retrain`` cannot be replayed
as a deployment; the canonical form is computed again from the decoded JSON by the
reader, so whitespace or key order on the wire do not matter, every value does.

Writers sign with the current key (``PHOENIX_CONTROL_KEY``); readers accept the current
key or one of ``PHOENIX_CONTROL_KEYS_PREVIOUS`` (a rotation: readers first, then
writers), comparing in constant time. A record that fails raises ``Unauthenticated``,
which the agents dead-letter as ``unauthenticated_control``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from phoenix_stream.exceptions import ConfigError, Unauthenticated, ValidationError
from phoenix_stream.messages.validation import load_json, shorten
from phoenix_stream.settings import ENV, Settings

__all__ = ["AUTH_FIELD", "KIND", "ControlAuth", "canonical"]

AUTH_FIELD = "auth"
KIND = Unauthenticated.dead_letter_kind  # the dead-letter kind of a record that fails
_TAG_CHARS = 64  # hex characters of an HMAC-SHA256


def canonical(topic: str, fields: Mapping[str, Any]) -> bytes:
    """The bytes a tag covers: the topic and every field but ``auth``, sorted, compact.

    ``Unauthenticated`` for a value JSON cannot hold (an integer beyond 64 bits).
    """
    body = {k: v for k, v in fields.items() if k != AUTH_FIELD}
    try:
        return orjson.dumps({"record": body, "topic": topic}, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise Unauthenticated(AUTH_FIELD, f"record has no canonical form: {exc}") from exc


class ControlAuth:
    """Signs control records with the current key; verifies with any accepted key."""

    def __init__(self, current: str, previous: Sequence[str] = ()) -> None:
        self._current = current.encode()
        self._accepted = tuple(k.encode() for k in (current, *previous) if k)

    @classmethod
    def from_settings(cls, settings: Settings) -> ControlAuth:
        """PHOENIX_CONTROL_KEY and PHOENIX_CONTROL_KEYS_PREVIOUS (possibly empty)."""
        return cls(settings.control_key, settings.previous_control_keys)

    @property
    def configured(self) -> bool:
        """Whether a current key is set (a worker refuses to start without one)."""
        return bool(self._current)

    def require(self) -> None:
        """ConfigError naming PHOENIX_CONTROL_KEY when no key is set."""
        if not self.configured:
            raise ConfigError(
                f"{ENV['control_key']} must be set: control records (deployments, retrain) "
                "are signed and verified with it (e.g. 'openssl rand -hex 32', the same "
                "on every worker)"
            )

    def tag(self, topic: str, fields: Mapping[str, Any]) -> str:
        """The hex HMAC-SHA256 of ``fields`` on ``topic`` under the current key."""
        self.require()
        return hmac.new(self._current, canonical(topic, fields), hashlib.sha256).hexdigest()

    def seal(self, topic: str, fields: Mapping[str, Any]) -> bytes:
        """JSON bytes of ``fields`` with their tag, ready for ``topic``."""
        return orjson.dumps({**fields, AUTH_FIELD: self.tag(topic, fields)})

    def verify(self, topic: str, data: Any) -> dict[str, Any]:
        """``data`` (decoded JSON) without its tag, if the tag is right; else Unauthenticated
        (ValidationError when ``data`` is not an object)."""
        if not isinstance(data, dict):
            raise ValidationError("$", "a control record must be a JSON object")
        tag = data.get(AUTH_FIELD)
        if not isinstance(tag, str) or len(tag) != _TAG_CHARS:
            raise Unauthenticated(AUTH_FIELD, "missing or malformed authenticator")
        message = canonical(topic, data)
        given = tag.encode()
        # Every accepted key is tried, so the time taken does not say which one matched.
        matched = False
        for key in self._accepted:
            expected = hmac.new(key, message, hashlib.sha256).hexdigest().encode()
            matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise Unauthenticated(AUTH_FIELD, "authenticator does not match the record")
        return {k: v for k, v in data.items() if k != AUTH_FIELD}

    def open(self, topic: str, raw: bytes | None) -> dict[str, Any]:
        """Decode and verify a record's bytes.

        ValidationError for bytes that are not a JSON object (an invalid record, as
        before signing); Unauthenticated for an object without the right tag.
        """
        try:
            data = load_json(raw or b"")
        except ValueError as exc:
            raise ValidationError("$", f"invalid JSON: {shorten(str(exc), 200)}") from exc
        return self.verify(topic, data)
