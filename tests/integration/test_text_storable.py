"""Kafka and PostgreSQL agree: any text a decoder of outside input accepts, PostgreSQL stores.

Hypothesis writes records of every kind (requests, feedback, deployments, retrain
requests) whose text fields hold anything, NUL and lone surrogates included, escaped or
raw; every string of what the decoder accepts goes through asyncpg into a ``text`` column
(and the features into ``jsonb``, as the sink stores them) and must come back equal.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.exceptions import ValidationError
from phoenix_stream.lifecycle.deployment_record import decode_record as decode_deployment
from phoenix_stream.lifecycle.feedback import ParsedFeedback, decode_feedback
from phoenix_stream.lifecycle.retrain_request import decode_request as decode_retrain
from phoenix_stream.messages.requests import ParsedRequest, decode_record

BOUNDED = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Plain text, text around NUL and the surrogate block (hypothesis leaves category Cs out).
TEXT = (
    st.text(min_size=1, max_size=8)
    | st.text(st.sampled_from("a\x00\ud800\udfff\U0001f600é"), min_size=1, max_size=6)
    | st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE00F), min_size=1, max_size=4)
)
REQUEST = st.fixed_dictionaries(
    {"request_id": TEXT, "entity_id": TEXT},
    optional={"model": TEXT, "features": st.dictionaries(TEXT, st.floats(-9, 9), max_size=3)},
)
FEEDBACK = st.fixed_dictionaries({"request_id": TEXT, "label": st.sampled_from([0, 1])})
DEPLOYMENT = st.fixed_dictionaries(
    {"model": TEXT, "champion": TEXT, "generation": st.integers(1, 99)},
    optional={
        "challenger": TEXT,
        "actor": TEXT,
        "reason": TEXT,
        "evidence": st.dictionaries(TEXT, TEXT, max_size=2),
    },
)
RETRAIN = st.fixed_dictionaries(
    {"model": TEXT, "reason": TEXT, "actor": TEXT, "requested_at": st.just(1.8e9)},
    optional={"trigger_id": TEXT, "report": st.dictionaries(TEXT, TEXT, max_size=2)},
)


def encode(value: Any, ascii_escapes: bool) -> bytes:
    """JSON as a careless producer writes it: escapes, or raw surrogates (invalid UTF-8)."""
    return json.dumps(value, ensure_ascii=ascii_escapes).encode("utf-8", "surrogatepass")


def strings(value: Any) -> list[str]:
    """Every string in ``value`` (keys too)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings(v)]
    return []


@pytest.fixture
async def conn(services: ServiceAddresses) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(services.postgres_dsn)
    await connection.execute("CREATE TEMPORARY TABLE storable (v text, j jsonb)")
    try:
        yield connection
    finally:
        await connection.close()


async def assert_stored(conn: Any, texts: list[str], features: Any = None) -> None:
    """Each of ``texts`` stored in a text column reads back equal; features as jsonb too."""
    for text in texts:
        assert await conn.fetchval("INSERT INTO storable (v) VALUES ($1) RETURNING v", text) == text
    if features:
        raw = orjson.dumps(features).decode()
        back = await conn.fetchval("INSERT INTO storable (j) VALUES ($1::jsonb) RETURNING j", raw)
        assert orjson.loads(back) == dict(features)


@BOUNDED
@given(st.lists(REQUEST, min_size=1, max_size=3) | REQUEST, st.booleans())
@example({"request_id": "r", "entity_id": "a\x00b"}, True)
@example([{"request_id": "r", "entity_id": "ok", "features": {"x\x00": 1.0}}], True)
async def test_accepted_requests_are_storable(conn: Any, value: Any, ascii_escapes: bool) -> None:
    decoded = decode_record(
        encode(value, ascii_escapes), default_model="m", max_bytes=10**6, max_batch=5
    )
    for item in decoded:
        if isinstance(item, ParsedRequest):
            await assert_stored(conn, [item.request_id, item.entity_id, item.model], item.features)


@BOUNDED
@given(st.lists(FEEDBACK, min_size=1, max_size=3) | FEEDBACK, st.booleans())
@example({"request_id": "r\x00", "label": 1}, True)
async def test_accepted_feedback_is_storable(conn: Any, value: Any, ascii_escapes: bool) -> None:
    raw = encode(value, ascii_escapes)
    for item in decode_feedback(raw, now=1.8e9, max_bytes=10**6, max_batch=5):
        if isinstance(item, ParsedFeedback):
            await assert_stored(conn, [item.request_id])


@BOUNDED
@given(DEPLOYMENT, st.booleans())
@example({"model": "m", "champion": "1", "generation": 1, "actor": "a\x00"}, True)
async def test_accepted_deployments_are_storable(
    conn: Any, value: Any, ascii_escapes: bool
) -> None:
    try:
        record = decode_deployment(encode(value, ascii_escapes))
    except ValidationError:
        return
    await assert_stored(conn, strings(record.as_dict()))


@BOUNDED
@given(RETRAIN, st.booleans())
@example(
    {"model": "m", "reason": "r", "actor": "a", "requested_at": 1.8e9, "report": {"k": "\x00"}},
    True,
)
async def test_accepted_retrain_requests_are_storable(
    conn: Any, value: Any, ascii_escapes: bool
) -> None:
    try:
        request = decode_retrain(encode(value, ascii_escapes))
    except ValidationError:
        return
    await assert_stored(conn, strings(request.as_dict()))
