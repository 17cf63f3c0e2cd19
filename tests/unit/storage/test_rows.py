"""Checking and converting prediction rows into the sink's COPY records."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.storage.rows import COLUMNS, prediction_records


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
