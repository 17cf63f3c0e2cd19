"""Any body POSTed to a real worker's predict views gets 200 or a JSON 4xx, never a 500.

Hypothesis drives plain blocking ``http.client`` calls from sync tests: the worker is
another process, so blocking here stalls nothing, and hypothesis needs no event loop.
"""

from __future__ import annotations

import http.client
import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from phoenix_stream.tools.worker_process import WorkerProcess

PATHS = st.sampled_from(["/v1/predict", "/v1/predict/batch"])
# Pieces of JSON-like text: arbitrary bytes alone mostly fail at their first character.
_PIECES = b'{ } [ ] " \\ : , NaN -Infinity 1e999 7 "\\ud800" \xff "entity_id" "c000042" "x"'
FRAGMENTS = st.lists(
    st.sampled_from([*_PIECES.split(), b'"features"', b'"requests"', b"1" * 401]), max_size=40
).map(b"".join)
PROPERTY_SETTINGS = settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Text around the surrogate block half the time (hypothesis omits category Cs by default).
AROUND_SURROGATES = st.characters(min_codepoint=0xD7F0, max_codepoint=0xE00F)
TEXT = st.text(max_size=10) | st.text(alphabet=AROUND_SURROGATES, min_size=1, max_size=5)
NUMBERS = (
    st.integers()
    | st.integers(min_value=-(10**450), max_value=10**450)
    | st.floats()
    | st.sampled_from([3.4028234663852886e38, 1e39, -1e39, 1_700_000_000.0])
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=12,
)
ENTITIES = st.sampled_from(["c000001", "c000042", "c001999", "nobody"]) | TEXT | NUMBERS
FEATURES = st.dictionaries(
    st.sampled_from(["credit_amount", "duration_months", "interest_rate", "age"]) | TEXT,
    st.floats(-1e6, 1e6) | NUMBERS,  # plausible values half the time, to reach scoring
    max_size=4,
)
REQUESTS = st.fixed_dictionaries(
    {"entity_id": ENTITIES},
    optional={
        "request_id": TEXT | NUMBERS,
        "model": st.sampled_from(["credit-risk", "no-such-model"]) | TEXT,
        "features": FEATURES | JSON_VALUES,
        "sent_at": st.floats(1.6e9, 1.8e9) | SCALARS,
    },
)
# Well-formed requests, so that a share of examples goes all the way through scoring.
SCORABLE = st.fixed_dictionaries(
    {"entity_id": st.sampled_from(["c000001", "c000042", "c001999"])},
    optional={
        "features": st.dictionaries(
            st.sampled_from(["credit_amount", "duration_months", "interest_rate"]),
            st.floats(-1e6, 1e6) | st.integers(-(10**6), 10**6),
        ),
        "model": st.just("credit-risk"),
    },
)
SINGLE = SCORABLE | REQUESTS | JSON_VALUES
BATCH = (
    st.lists(SCORABLE | REQUESTS, min_size=1, max_size=4)
    | st.fixed_dictionaries({"requests": st.lists(SCORABLE | REQUESTS, max_size=4) | JSON_VALUES})
    | SINGLE
)
CALLS = st.tuples(st.just("/v1/predict"), SINGLE) | st.tuples(st.just("/v1/predict/batch"), BATCH)


@pytest.fixture(scope="module")
async def worker(worker_factory: Any) -> WorkerProcess:
    started: WorkerProcess = await worker_factory.start()
    return started


def post(worker: WorkerProcess, path: str, body: bytes) -> tuple[int, bytes]:
    """Status and body of a blocking POST to the worker (127.0.0.1)."""
    connection = http.client.HTTPConnection("127.0.0.1", worker.settings.web_port, timeout=15)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def assert_answered(status: int, raw: bytes, path: str) -> None:
    """200 with predictions, or a 4xx JSON error with ``error`` and ``field``."""
    event(f"{path} {status}")  # the spread of answers, in --hypothesis-show-statistics
    # No 503 either: nothing here fills the queue or stops a dependency.
    assert status == 200 or 400 <= status < 500, (status, raw[:300])
    body = orjson.loads(raw)
    if status == 200 and path == "/v1/predict":
        assert {"request_id", "score", "label"} <= body.keys()
    elif status == 200:
        for error in body["errors"]:
            assert 400 <= error["status"] < 500 and error["error"] and error["field"], error
        assert len(body["predictions"]) + len(body["errors"]) >= 1
    else:
        assert body["error"] and "field" in body
        if status not in (400, 413):  # only unparseable or oversize bodies have no field
            assert body["field"], body


def encode(value: Any, ascii_escapes: bool) -> bytes:
    """JSON as a careless producer writes it: NaN, huge integers, lone surrogates."""
    return json.dumps(value, ensure_ascii=ascii_escapes).encode("utf-8", "surrogatepass")


@PROPERTY_SETTINGS
@given(path=PATHS, body=st.binary(max_size=200) | FRAGMENTS)
@example(path="/v1/predict", body=b'{"entity_id": "\xff"}')
@example(path="/v1/predict/batch", body=b'[{"entity_id": "\xed\xa0\x80"}]')
@example(path="/v1/predict", body=b'{"entity_id": "c1", "features": {"x": ' + b"[" * 50_000)
def test_any_bytes_get_200_or_json_4xx(worker: WorkerProcess, path: str, body: bytes) -> None:
    status, raw = post(worker, path, body)
    assert_answered(status, raw, path)


@PROPERTY_SETTINGS
@given(call=CALLS, ascii_escapes=st.booleans())
@example(call=("/v1/predict", {"entity_id": "\ud800"}), ascii_escapes=True)
@example(call=("/v1/predict", {"entity_id": "c1", "sent_at": 10**400}), ascii_escapes=True)
@example(
    call=("/v1/predict", {"entity_id": "c000042", "features": {"credit_amount": 10**399}}),
    ascii_escapes=True,
)
@example(
    call=("/v1/predict/batch", [{"entity_id": "c000042", "features": {"credit_amount": 1e39}}]),
    ascii_escapes=True,
)
@example(
    call=("/v1/predict/batch", {"requests": [{"entity_id": "c1", "features": {"x": math.nan}}, 7]}),
    ascii_escapes=True,
)
def test_any_json_gets_200_or_json_4xx(
    worker: WorkerProcess, call: tuple[str, Any], ascii_escapes: bool
) -> None:
    path, value = call
    status, raw = post(worker, path, encode(value, ascii_escapes))
    assert_answered(status, raw, path)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            b'{"entity_id": "c000042", "features": {"credit_amount": 1' + b"0" * 399 + b"}}",
            "features.credit_amount",
        ),
        (
            b'{"entity_id": "c000042", "features": {"credit_amount": 1e39}}',
            "features.credit_amount",
        ),
        (b'{"entity_id": 18446744073709551616}', "entity_id"),
        (b'{"entity_id": "c000042", "' + b"z" * 10_000 + b'": 1}', "z" * 64 + "..."),
    ],
)
def test_found_bodies_are_422_naming_the_field(
    worker: WorkerProcess, body: bytes, field: str
) -> None:
    status, raw = post(worker, "/v1/predict", body)
    assert status == 422, raw[:300]
    answer = orjson.loads(raw)
    assert answer["field"] == field and len(answer["error"]) < 200


def test_deep_nesting_and_lone_surrogates_are_400(worker: WorkerProcess) -> None:
    deep = b'{"entity_id": "c1", "features": {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}"
    for body in (deep, b'{"entity_id": "\\ud800"}', b'{"entity_id": "c1", "x": NaN, "y": "\xff"}'):
        status, raw = post(worker, "/v1/predict", body)
        assert status == 400, raw[:300]
        assert orjson.loads(raw)["error"].startswith("invalid JSON")
    # The worker is still serving.
    status, raw = post(worker, "/v1/predict", b'{"entity_id": "c000042"}')
    assert status == 200, raw[:300]
