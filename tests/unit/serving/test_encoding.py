"""The hot path's JSON is exactly what the faust.Record schemas decode."""

from __future__ import annotations

import dataclasses

from phoenix_stream.messages.schemas import Prediction
from phoenix_stream.serving.encoding import encode_prediction
from phoenix_stream.serving.predictor import Scored


def test_prediction_bytes_decode_into_the_record() -> None:
    scored = Scored(
        "r1",
        "e1",
        "credit-risk",
        "2",
        "challenger",
        0.25,
        0,
        {"amount": 3.0},
        ["age"],
        True,
        "kafka",
        100.0,
        100.004,
        4.0,
        99.5,
    )
    raw = encode_prediction(scored)
    record = Prediction.loads(raw)
    assert isinstance(record, Prediction)
    assert record.asdict() == {
        "request_id": "r1",
        "entity_id": "e1",
        "model": "credit-risk",
        "version": "2",
        "variant": "challenger",
        "score": 0.25,
        "label": 0,
        "features": {"amount": 3.0},
        "defaults_used": ["age"],
        "degraded": True,
        "source": "kafka",
        "received_at": 100.0,
        "predicted_at": 100.004,
        "latency_ms": 4.0,
        "sent_at": 99.5,
    }


def test_scored_has_exactly_the_prediction_fields() -> None:
    assert [f.name for f in dataclasses.fields(Scored)] == list(Prediction._options.fields)
