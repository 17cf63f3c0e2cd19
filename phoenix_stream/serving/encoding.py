"""Fast JSON encoding of outgoing messages in the shape of ``phoenix_stream.messages.schemas``.

A Faust consumer with ``value_type=Prediction`` decodes these bytes into the Record
class (Faust needs no ``__faust`` marker when the topic names its value type). Dead
letters are built in ``messages.dead_letters``.
"""

from __future__ import annotations

import orjson

from phoenix_stream.serving.predictor import Scored


def encode_prediction(scored: Scored) -> bytes:
    """JSON bytes of one prediction (orjson encodes the flat dataclass natively)."""
    return orjson.dumps(scored)
