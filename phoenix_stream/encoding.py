"""Fast JSON encoding of outgoing messages in the shape of ``phoenix_stream.records``.

The bytes carry Faust's ``__faust`` namespace marker, so a Faust consumer with
``value_type=Prediction`` (the sink agent) decodes them into the Record class.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from phoenix_stream.inference import Rejection, Scored
from phoenix_stream.records import DeadLetter, Prediction
from phoenix_stream.validation import RejectedRequest

_PREDICTION_NS = {"ns": Prediction._options.namespace}
_DEAD_LETTER_NS = {"ns": DeadLetter._options.namespace}


def prediction_dict(scored: Scored) -> dict[str, Any]:
    """A prediction as the JSON object of a ``Prediction`` record."""
    request = scored.request
    return {
        "request_id": request.request_id,
        "entity_id": request.entity_id,
        "model": scored.model,
        "version": scored.version,
        "variant": scored.variant,
        "score": scored.score,
        "label": scored.label,
        "features": scored.features,
        "defaults_used": scored.defaults_used,
        "degraded": scored.degraded,
        "source": scored.source,
        "received_at": scored.received_at,
        "predicted_at": scored.predicted_at,
        "latency_ms": scored.latency_ms,
        "sent_at": request.sent_at,
        "__faust": _PREDICTION_NS,
    }


def encode_prediction(scored: Scored) -> bytes:
    """JSON bytes of one prediction."""
    return orjson.dumps(prediction_dict(scored))


def encode_dead_letter(
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    original: bytes,
    kind: str,
    error: str,
    field: str | None,
    batch_index: int | None,
    failed_at: float,
) -> bytes:
    """JSON bytes of one ``DeadLetter``; the original bytes travel base64-encoded."""
    return orjson.dumps(
        {
            "source_topic": source_topic,
            "partition": partition,
            "offset": offset,
            "original_key": base64.b64encode(key).decode() if key is not None else None,
            "original_value": base64.b64encode(original).decode(),
            "error_kind": kind,
            "error": error,
            "field": field,
            "batch_index": batch_index,
            "failed_at": failed_at,
            "__faust": _DEAD_LETTER_NS,
        }
    )


def rejection_parts(item: RejectedRequest | Rejection) -> tuple[str, str, str | None, int | None]:
    """(kind, error, field, batch_index) of a decode-time or predict-time rejection."""
    if isinstance(item, RejectedRequest):
        return item.kind, item.error, item.field, item.batch_index
    return item.kind, item.error, item.field, item.request.batch_index
