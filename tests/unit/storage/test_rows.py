"""Checking and converting prediction rows into the sink's COPY records."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.requests import MAX_ID_LENGTH
from phoenix_stream.storage.rows import (
    COLUMNS,
    INT4_MAX,
    INT4_MIN,
    MAX_FEATURES,
    MAX_TEXT_CHARS,
    TIME_MAX_S,
    TIME_MIN_S,
    prediction_records,
)


def row(**changes: Any) -> dict[str, Any]:
    """A valid prediction row, with ``changes`` applied."""
    base: dict[str, Any] = {
        "request_id": "r-1",
        "entity_id": "e-1",
        "model": "credit",
        "version": "3",
        "variant": "champion",
        "score": 0.75,
        "label": 1,
        "features": {"age": 31.0, "income": 52_000.0},
        "defaults_used": ["income"],
        "degraded": False,
        "source": "kafka",
        "received_at": 1_700_000_000.25,
        "predicted_at": 1_700_000_000.5,
        "latency_ms": 250.0,
    }
    base.update(changes)
    return base


def test_record_follows_columns_order() -> None:
    (record,) = prediction_records([row()])
    assert len(record) == len(COLUMNS)
    as_dict = dict(zip(COLUMNS, record, strict=True))
    assert as_dict["features"] == '{"age":31.0,"income":52000.0}'
    assert as_dict["defaults_used"] == ["income"]
    assert as_dict["received_at"] == 1_700_000_000.25
    assert {k: as_dict[k] for k in ("request_id", "label", "degraded")} == {
        "request_id": "r-1",
        "label": 1,
        "degraded": False,
    }


def test_numpy_scalars_and_ints_are_converted() -> None:
    (record,) = prediction_records(
        [
            row(
                score=np.float32(0.5),
                label=np.int64(0),
                degraded=np.bool_(True),
                features={"a": np.float32(1.5), "b": np.float64(2.0)},
                received_at=1_700_000_000,
            )
        ]
    )
    as_dict = dict(zip(COLUMNS, record, strict=True))
    assert type(as_dict["score"]) is float and as_dict["score"] == 0.5
    assert type(as_dict["label"]) is int and as_dict["label"] == 0
    assert as_dict["degraded"] is True
    assert as_dict["features"] == '{"a":1.5,"b":2.0}'
    assert type(as_dict["received_at"]) is float


def test_none_is_stored_as_null_except_request_id() -> None:
    nullable = {key: None for key in COLUMNS if key != "request_id"}
    (record,) = prediction_records([row(**nullable)])
    assert record == ("r-1",) + (None,) * (len(COLUMNS) - 1)


def test_non_finite_feature_becomes_json_null() -> None:
    (record,) = prediction_records([row(features={"a": float("nan")})])
    assert record[COLUMNS.index("features")] == '{"a":null}'


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"request_id": ""}, "rows[1].request_id"),
        ({"request_id": 7}, "rows[1].request_id"),
        ({"request_id": "a\x00b"}, "rows[1].request_id"),
        ({"model": 3}, "rows[1].model"),
        ({"source": "k\x00"}, "rows[1].source"),
        ({"score": "0.5"}, "rows[1].score"),
        ({"score": True}, "rows[1].score"),
        ({"label": 1.0}, "rows[1].label"),
        ({"label": False}, "rows[1].label"),
        ({"features": [1.0]}, "rows[1].features"),
        ({"features": {"a": object()}}, "rows[1].features"),
        ({"defaults_used": "income"}, "rows[1].defaults_used"),
        ({"defaults_used": [1]}, "rows[1].defaults_used"),
        ({"degraded": "no"}, "rows[1].degraded"),
        ({"predicted_at": "now"}, "rows[1].predicted_at"),
    ],
)
def test_bad_value_names_row_and_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        prediction_records([row(), row(**changes)])
    assert info.value.field == field


def test_missing_key_names_row_and_field() -> None:
    bad = row()
    del bad["latency_ms"]
    with pytest.raises(ValidationError) as info:
        prediction_records([bad])
    assert info.value.field == "rows[0].latency_ms"


def test_rejects_collects_bad_rows_and_keeps_the_rest() -> None:
    rejects: list[tuple[int, ValidationError]] = []
    missing = row(request_id="r-2")
    del missing["model"]
    records = prediction_records(
        [row(request_id="r-0"), row(request_id="r-1", label="x"), missing, row(request_id="r-3")],
        rejects,
    )
    assert [r[0] for r in records] == ["r-0", "r-3"]
    assert [(i, e.field) for i, e in rejects] == [(1, "rows[1].label"), (2, "rows[2].model")]


def test_empty_batch() -> None:
    assert prediction_records([]) == []


LONG_TEXT = "\U0001f600" * (MAX_TEXT_CHARS + 1)  # 4 UTF-8 bytes per character
MANY_FEATURES = {f"f{i}": 1.0 for i in range(MAX_FEATURES + 1)}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        # Times PostgreSQL's to_timestamp() refuses, or stores but asyncpg cannot read back.
        ({"received_at": 1e300}, "received_at"),
        ({"received_at": float("inf")}, "received_at"),
        ({"received_at": float("nan")}, "received_at"),
        ({"received_at": -1.0}, "received_at"),
        ({"received_at": TIME_MAX_S}, "received_at"),
        ({"received_at": 1_700_000_000_000}, "received_at"),  # milliseconds by mistake
        ({"predicted_at": 1e300}, "predicted_at"),
        ({"predicted_at": -float("inf")}, "predicted_at"),
        ({"predicted_at": np.float64(TIME_MAX_S)}, "predicted_at"),
        # Beyond the integer (int4) column: the driver refuses to encode it.
        ({"label": INT4_MAX + 1}, "label"),
        ({"label": INT4_MIN - 1}, "label"),
        ({"label": np.int64(2**40)}, "label"),
        ({"label": 10**30}, "label"),
        # float8 stores them, but they are no score or latency and poison aggregates.
        ({"score": float("inf")}, "score"),
        ({"score": float("nan")}, "score"),
        ({"score": np.float32("nan")}, "score"),
        ({"latency_ms": float("inf")}, "latency_ms"),
        ({"latency_ms": float("nan")}, "latency_ms"),
        # PostgreSQL text refuses NUL; UTF-8 cannot encode a lone surrogate.
        ({"entity_id": "e\x00"}, "entity_id"),
        ({"model": "\x00"}, "model"),
        ({"version": "3\x00"}, "version"),
        ({"variant": "champion\x00"}, "variant"),
        ({"source": "\ud800"}, "source"),
        ({"request_id": "r\udfff"}, "request_id"),
        # Bounded sizes (btree entries, row size).
        ({"request_id": "r" * (MAX_TEXT_CHARS + 1)}, "request_id"),
        ({"entity_id": LONG_TEXT}, "entity_id"),
        ({"model": LONG_TEXT}, "model"),
        # Feature names: the same as text (jsonb refuses \u0000 in a key); values numbers.
        ({"features": {"a\x00": 1.0}}, "features"),
        ({"features": {"\ud800": 1.0}}, "features"),
        ({"features": {LONG_TEXT: 1.0}}, "features"),
        ({"features": {1: 1.0}}, "features"),
        ({"features": {"a": "1.0"}}, "features"),
        ({"features": {"a": True}}, "features"),
        ({"features": {"a": {"nested": 1.0}}}, "features"),
        ({"features": MANY_FEATURES}, "features"),
        ({"defaults_used": ["a\x00"]}, "defaults_used"),
        ({"defaults_used": [LONG_TEXT]}, "defaults_used"),
        ({"defaults_used": ["a"] * (MAX_FEATURES + 1)}, "defaults_used"),
        ({"defaults_used": {"a": 1}}, "defaults_used"),
    ],
)
def test_what_postgres_would_refuse_is_refused_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    rejects: list[tuple[int, ValidationError]] = []
    records = prediction_records([row(request_id="ok"), row(**changes)], rejects)
    assert [r[0] for r in records] == ["ok"]
    assert [(i, e.field) for i, e in rejects] == [(1, f"rows[1].{field}")]
    assert len(str(rejects[0][1])) < 400  # the reason stays small, whatever the value


@pytest.mark.parametrize(
    "changes",
    [
        {"received_at": TIME_MIN_S, "predicted_at": math.nextafter(TIME_MAX_S, 0.0)},
        {"label": INT4_MIN},
        {"label": INT4_MAX},
        {"label": np.int32(INT4_MAX)},
        {"score": -1e308, "latency_ms": -3.0},  # finite is all the columns need
        {"request_id": "r" * MAX_TEXT_CHARS, "model": "\U0001f600" * MAX_TEXT_CHARS},
        {"entity_id": "", "variant": "", "source": "héllo wörld"},
        {"features": {f"f{i}": float(i) for i in range(MAX_FEATURES)}},
        {"features": {"é" * MAX_TEXT_CHARS: None, "b": np.float32(1.0), "c": 3}},
        {"features": {}, "defaults_used": ()},
        {"defaults_used": ["x"] * MAX_FEATURES},
    ],
)
def test_values_at_the_limits_are_accepted(changes: dict[str, Any]) -> None:
    (record,) = prediction_records([row(**changes)])
    assert record[0] == changes.get("request_id", "r-1")


def test_every_request_the_pipeline_accepts_fits_the_sink() -> None:
    # Ids are checked upstream against MAX_ID_LENGTH; the sink must never refuse those.
    assert MAX_ID_LENGTH <= MAX_TEXT_CHARS


# Values from outside (decoded JSON, numpy scalars from the model path), extremes included.
_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.lists(st.text(max_size=20), max_size=5),
    st.dictionaries(
        st.text(max_size=20),
        st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=5)),
        max_size=5,
    ),
)
_TEXT_KEYS = ("request_id", "entity_id", "model", "version", "variant", "source")


def _fits_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value and len(value) <= MAX_TEXT_CHARS


@given(key=st.sampled_from(COLUMNS), value=_ANY_VALUE)
def test_any_value_is_refused_naming_its_field_or_fits_its_column(key: str, value: Any) -> None:
    try:
        (record,) = prediction_records([row(**{key: value})])
    except ValidationError as exc:
        assert exc.field == f"rows[0].{key}"
        return
    stored = record[COLUMNS.index(key)]
    if stored is None:
        assert value is None
    elif key in _TEXT_KEYS:
        assert type(stored) is str and _fits_text(stored)
    elif key in ("score", "latency_ms"):
        assert type(stored) is float and math.isfinite(stored)
    elif key in ("received_at", "predicted_at"):
        assert type(stored) is float and TIME_MIN_S <= stored < TIME_MAX_S
    elif key == "label":
        assert type(stored) is int and INT4_MIN <= stored <= INT4_MAX
    elif key == "features":
        decoded = orjson.loads(stored)
        assert isinstance(decoded, dict) and len(decoded) <= MAX_FEATURES
        assert all(_fits_text(name) for name in decoded)
        assert all(v is None or type(v) in (int, float) for v in decoded.values())
    elif key == "defaults_used":
        assert all(type(name) is str and _fits_text(name) for name in stored)
    else:
        assert key == "degraded" and type(stored) is bool
