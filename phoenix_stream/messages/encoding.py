"""Fast JSON encoding of outgoing messages in the shape of ``phoenix_stream.messages.schemas``.

A Faust consumer with ``value_type=Prediction`` decodes these bytes into the Record
class (Faust needs no ``__faust`` marker when the topic names its value type); dead
letters carry the marker, being rare.
"""

from __future__ import annotations

import base64

import orjson

from phoenix_stream.messages.schemas import DeadLetter
from phoenix_stream.serving.predictor import Scored

_DEAD_LETTER_NS = {"ns": DeadLetter._options.namespace}


def encode_prediction(scored: Scored) -> bytes:
    """JSON bytes of one prediction (orjson encodes the flat dataclass natively)."""
    return orjson.dumps(scored)


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
