"""Dead letters: schema, where they came from, and always small enough to deliver."""

from __future__ import annotations

import base64
import hashlib

import orjson
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.messages.dead_letters import MAX_ERROR_CHARS, MAX_KEY_BYTES, DeadLetters
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.messages.schemas import DeadLetter

LIMIT = 4096


def build(value: bytes | None, key: bytes | None = b"k", error: str = "bad") -> OutRecord:
    letters = DeadLetters("dead", LIMIT, clock=lambda: 5.0)
    source = InRecord("requests", 2, 7, key, value)
    return letters.record(source, "invalid_json", error, field="features.x", batch_index=3)


def test_decodes_into_the_schema_with_the_original_and_its_origin() -> None:
    original = b"\xff\x00 not json"
    out = build(original)
    letter = DeadLetter.loads(out.value)
    assert isinstance(letter, DeadLetter)
    assert base64.b64decode(letter.original_value) == original
    assert base64.b64decode(letter.original_key or "") == b"k"
    assert (letter.source_topic, letter.partition, letter.offset) == ("requests", 2, 7)
    assert (letter.error_kind, letter.field, letter.batch_index) == (
        "invalid_json",
        "features.x",
        3,
    )
    assert letter.original_size == len(original) and letter.truncated is False
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
    assert set(orjson.loads(out.value)) - {"__faust"} == set(DeadLetter._options.fields)
    assert (out.topic, out.key) == ("dead", b"k")


def test_a_large_original_is_cut_with_its_size_and_digest_kept() -> None:
    original = bytes(range(256)) * 4096  # 1 MiB
    out = build(original, key=b"x" * 1_000_000, error="e" * 100_000)
    letter = orjson.loads(out.value)
    assert base64.b64decode(letter["original_value"]) == original[:LIMIT]
    assert letter["truncated"] is True
    assert letter["original_size"] == len(original)
    assert letter["original_sha256"] == hashlib.sha256(original).hexdigest()
    assert len(base64.b64decode(letter["original_key"])) == MAX_KEY_BYTES
    assert out.key == hashlib.sha256(b"x" * 1_000_000).hexdigest().encode()
    assert len(letter["error"]) < MAX_ERROR_CHARS + 50
    assert len(out.value) < 2 * LIMIT + 2 * MAX_KEY_BYTES + MAX_ERROR_CHARS + 1000


@given(value=st.one_of(st.none(), st.binary(max_size=20_000)), key=st.none() | st.binary())
def test_any_input_gives_a_bounded_decodable_dead_letter(
    value: bytes | None, key: bytes | None
) -> None:
    out = build(value, key=key)
    letter = DeadLetter.loads(out.value)
    assert isinstance(letter, DeadLetter)
    kept = base64.b64decode(letter.original_value)
    assert kept == (value or b"")[:LIMIT]
    assert len(out.value) < 2 * LIMIT + 2 * MAX_KEY_BYTES + MAX_ERROR_CHARS + 1000


def test_an_undeliverable_output_becomes_a_dead_letter_but_a_dead_letter_does_not() -> None:
    letters = DeadLetters("dead", LIMIT)
    prediction = OutRecord("predictions", b"c1", b'{"request_id": "r1"}')
    replacement = letters.undeliverable(prediction, ValueError("too large"))
    assert replacement is not None
    letter = orjson.loads(replacement.value)
    assert letter["error_kind"] == "undeliverable"
    assert letter["source_topic"] == "predictions"
    assert letter["error"] == "ValueError: too large"
    assert base64.b64decode(letter["original_value"]) == prediction.value
    assert letters.undeliverable(replacement, ValueError("again")) is None
