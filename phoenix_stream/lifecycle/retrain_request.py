"""A retrain request: the message on the ``retrain`` topic that asks for one retraining.

Sent by the drift monitor on an alarm, by ``POST /v1/models/{model}/retrain`` and by
``phoenix-stream retrain``, keyed by its model and signed (``control_auth``); the retrain
agent takes one with :func:`read_request`, which refuses a record that is not authentic
or not keyed by its model, and :func:`parse_request` names the field of an invalid one.
``lifecycle.retraining.RetrainJob`` runs it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from phoenix_stream.exceptions import Unauthenticated, ValidationError
from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.messages.validation import EPOCH_RANGE, decode_json, is_identifier, shorten

__all__ = [
    "MAX_ID",
    "MAX_REPORT_BYTES",
    "MAX_REQUEST_BYTES",
    "MAX_TEXT",
    "RetrainRequest",
    "decode_request",
    "parse_request",
    "read_request",
]

MAX_TEXT = 1000  # characters of a reason
MAX_ID = 200  # characters of a trigger_id or an actor
MAX_REPORT_BYTES = 8192  # a report's JSON; it travels on into the deployment's evidence
MAX_REQUEST_BYTES = 16_384

_REQUIRED = ("model", "reason", "requested_at", "actor")
_FIELDS = frozenset({*_REQUIRED, "trigger_id", "report", "data_since", "replace_challenger"})


@dataclass(frozen=True, slots=True)
class RetrainRequest:
    """Ask for one retraining of ``model``; ``requested_at`` in epoch seconds.

    ``trigger_id`` (None: never deduplicated) identifies the cause, such as one drift
    alarm; ``report`` is the evidence behind it (the drift report), JSON of at most
    MAX_REPORT_BYTES. ``data_since`` (epoch seconds; None: the last ``window_s``) is
    where the training data starts. ``replace_challenger`` lets the new version replace
    a challenger that a person deployed (set only by the admin endpoint).
    """

    model: str
    reason: str
    requested_at: float
    actor: str
    trigger_id: str | None = None
    report: Mapping[str, Any] | None = None
    data_since: float | None = None
    replace_challenger: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types: the wire and API shape."""
        return {
            "model": self.model,
            "reason": self.reason,
            "trigger_id": self.trigger_id,
            "report": None if self.report is None else dict(self.report),
            "requested_at": self.requested_at,
            "actor": self.actor,
            "data_since": self.data_since,
            "replace_challenger": self.replace_challenger,
        }

    def encode(self) -> bytes:
        """Unsigned JSON bytes (the agent refuses them on the topic: see ``seal``)."""
        return orjson.dumps(self.as_dict())

    def seal(self, auth: ControlAuth, topic: str) -> bytes:
        """Signed JSON bytes for the ``retrain`` topic ``topic`` (key: the model)."""
        return auth.seal(topic, self.as_dict())


def read_request(
    topic: str, key: bytes | None, value: bytes | None, auth: ControlAuth
) -> RetrainRequest:
    """A request from a record of ``topic``, if authentic and keyed by its model.

    Unauthenticated (dead-letter kind ``unauthenticated_control``) for a wrong or missing
    authenticator or key; ValidationError naming the field for an invalid request.
    """
    if value is not None and len(value) > MAX_REQUEST_BYTES:
        raise ValidationError("$", f"is {len(value)} bytes, over the limit of {MAX_REQUEST_BYTES}")
    request = parse_request(auth.open(topic, value))
    if key != request.model.encode():
        raise Unauthenticated("key", f"record key must be its model {request.model!r}")
    return request


def decode_request(raw: bytes | None) -> RetrainRequest:
    """A request from the topic's bytes; ValidationError naming the field when invalid."""
    return parse_request(decode_json(raw, MAX_REQUEST_BYTES))


def parse_request(data: Any) -> RetrainRequest:
    """Validate a decoded request (a JSON object); ValidationError naming the field."""
    if not isinstance(data, dict):
        raise ValidationError("$", "a retrain request must be a JSON object")
    unknown = sorted(str(key) for key in data.keys() - _FIELDS)
    if unknown:
        raise ValidationError(shorten(unknown[0]), "unknown field")
    for key in _REQUIRED:
        if key not in data:
            raise ValidationError(key, "is required")
    model = data["model"]
    if not isinstance(model, str) or not is_identifier(model):
        raise ValidationError("model", "must be a model name (letters, digits, ._-, at most 128)")
    trigger_id = data.get("trigger_id")
    if trigger_id is not None:
        trigger_id = _text(trigger_id, "trigger_id", MAX_ID)
    report = data.get("report")
    if report is not None:
        if not isinstance(report, dict):
            raise ValidationError("report", "must be an object or null")
        try:
            encoded = orjson.dumps(report)
        except orjson.JSONEncodeError as exc:  # NaN is fine (null); a huge int is not
            raise ValidationError("report", f"is not JSON: {exc}") from exc
        if len(encoded) > MAX_REPORT_BYTES or b"\\u0000" in encoded:
            raise ValidationError("report", f"must be at most {MAX_REPORT_BYTES} bytes, no NUL")
        report = orjson.loads(encoded)  # plain JSON from here on (NaN became null)
    data_since = data.get("data_since")
    replace = data.get("replace_challenger", False)
    if not isinstance(replace, bool):
        raise ValidationError("replace_challenger", "must be true or false")
    return RetrainRequest(
        model=model,
        reason=_text(data["reason"], "reason", MAX_TEXT),
        requested_at=_epoch(data["requested_at"], "requested_at"),
        actor=_text(data["actor"], "actor", MAX_ID),
        trigger_id=trigger_id,
        report=report,
        data_since=None if data_since is None else _epoch(data_since, "data_since"),
        replace_challenger=replace,
    )


def _epoch(value: Any, field: str) -> float:
    low, high = EPOCH_RANGE
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and low <= value <= high)
    ):
        raise ValidationError(field, f"must be epoch seconds between {low:.0f} and {high:.0f}")
    return float(value)


def _text(value: Any, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty string")
    if len(value) > limit or "\x00" in value:
        raise ValidationError(field, f"must be at most {limit} characters, no NUL")
    return value
