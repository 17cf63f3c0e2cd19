"""The hot path's JSON is exactly what the faust.Record schemas decode."""

from __future__ import annotations

import base64

import orjson

from phoenix_stream.encoding import encode_dead_letter, encode_prediction
from phoenix_stream.inference import Scored
from phoenix_stream.records import DeadLetter, Prediction
from phoenix_stream.validation import ParsedRequest


def test_prediction_bytes_decode_into_the_record() -> None:
    request = ParsedRequest("r1", "e1", "credit-risk", {"amount": 3.0}, 99.5, None)
    scored = Scored(
        request,
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
        "latency_ms": scored.latency_ms,
        "sent_at": 99.5,
    }
    assert set(orjson.loads(raw)) - {"__faust"} == set(Prediction._options.fields)


def test_dead_letter_keeps_original_bytes() -> None:
    original = b"\xff\x00 not json"
    raw = encode_dead_letter(
        source_topic="t",
        partition=2,
        offset=7,
        key=b"k",
        original=original,
        kind="invalid_json",
        error="bad",
        field=None,
        batch_index=None,
        failed_at=5.0,
    )
    record = DeadLetter.loads(raw)
    assert isinstance(record, DeadLetter)
    assert base64.b64decode(record.original_value) == original
    assert base64.b64decode(record.original_key or "") == b"k"
    assert (record.source_topic, record.partition, record.offset) == ("t", 2, 7)
    assert set(orjson.loads(raw)) - {"__faust"} == set(DeadLetter._options.fields)
