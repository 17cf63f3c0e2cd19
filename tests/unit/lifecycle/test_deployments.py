"""Deployment records and the board, with a stand-in for model loading.

The real topic, two workers and real model loads: tests/integration/test_deployments.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.exceptions import Unauthenticated, ValidationError
from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.lifecycle.deployment_record import (
    MAX_GENERATION_LEAD_S,
    DeploymentRecord,
    decode_record,
    next_generation,
    parse_record,
    read_record,
)
from phoenix_stream.lifecycle.deployments import DeploymentBoard
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.serving.router import Deployment

AUTH = ControlAuth("k" * 32)
TOPIC = "deployments"
NOW = 1.7e9  # seconds since epoch


def raw(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"model": "m", "champion": "1", "generation": 5}
    base.update(fields)
    return base


def test_a_record_round_trips_through_its_bytes() -> None:
    record = parse_record(
        raw(challenger="2", strategy="canary", share=0.05, steps=[0.01, 0.05, 0.5], step=1,
            actor="ops", reason="try v2", evidence={"n": 10}, decided_at=1.5e9)
    )  # fmt: skip
    assert decode_record(record.encode()) == record
    assert record.deployment == Deployment("m", "1", "2", "canary", 0.05)
    assert record.versions() == ["1", "2"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "../etc"}, "model"),
        ({"champion": 1}, "champion"),
        ({"challenger": "1"}, "challenger"),
        ({"strategy": "ab"}, "challenger"),
        ({"challenger": "2", "strategy": "blue-green"}, "strategy"),
        ({"share": 1.5}, "share"),
        ({"share": True}, "share"),
        ({"generation": 0}, "generation"),
        ({"generation": "7"}, "generation"),
        ({"steps": [0.5, 0.1]}, "steps"),
        ({"steps": [0.1], "step": 3}, "step"),
        ({"decided_at": 1e300}, "decided_at"),
        ({"evidence": [1]}, "evidence"),
        ({"evidence": {"x": "\x00"}}, "evidence"),
        ({"reason": "a\x00b"}, "reason"),
        ({"actor": 7}, "actor"),
    ],
)
def test_an_invalid_record_names_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_record(raw(**fields))
    assert caught.value.field == field


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(sorted(raw(challenger="2"))) | st.text(), json_values))
def test_any_json_object_is_a_record_or_a_named_rejection(data: dict[str, object]) -> None:
    try:
        record = parse_record({**raw(), **data})
    except ValidationError as exc:
        assert exc.field
    else:
        assert decode_record(record.encode()) == record


@given(st.binary(max_size=200))
def test_any_bytes_are_a_record_or_a_named_rejection(value: bytes) -> None:
    try:
        decode_record(value)
    except ValidationError as exc:
        assert exc.field


def test_generations_only_grow() -> None:
    assert next_generation(0, clock=lambda: 1000.0) == 1_000_000
    assert next_generation(5_000_000, clock=lambda: 1000.0) == 5_000_001  # clock behind


@dataclass
class Failure:
    reason: str


class Models:
    """prepare() 'loads' every version except the broken ones."""

    def __init__(self, broken: set[str]) -> None:
        self.broken = broken
        self.prepared: list[tuple[str, str]] = []

    async def prepare(self, keys: Iterable[tuple[str, str]]) -> None:
        self.prepared.extend(keys)

    def failures(self) -> dict[tuple[str, str], Failure]:
        return {("m", v): Failure(f"{v} is broken") for v in self.broken}


def board(models: Models, tmp_path: Path) -> DeploymentBoard:
    return DeploymentBoard(
        "kafka://127.0.0.1:1",
        "deployments",
        models,  # type: ignore[arg-type]
        ModelRegistry(tmp_path),
        Deployment("m", "1"),
        AUTH,
    )


def record(generation: int, champion: str, challenger: str | None = None) -> DeploymentRecord:
    strategy = "shadow" if challenger else "single"
    return parse_record(
        raw(generation=generation, champion=champion, challenger=challenger, strategy=strategy)
    )


async def test_the_newest_generation_serves_and_an_older_one_changes_nothing(
    tmp_path: Path,
) -> None:
    view = board(Models(set()), tmp_path)
    assert view.get("m") == Deployment("m", "1")  # the settings' deployment until a record
    assert await view.apply(record(10, "2", "3")) is True
    assert view.get("m") == Deployment("m", "2", "3", "shadow", 0.0)
    assert await view.apply(record(9, "1")) is False  # replayed, older: ignored
    assert await view.apply(record(10, "1")) is False  # same generation: ignored
    assert view.get("m") == Deployment("m", "2", "3", "shadow", 0.0)
    assert view.highest_generation("m") == 10


async def test_a_version_that_fails_to_load_leaves_the_previous_one_serving(
    tmp_path: Path,
) -> None:
    models = Models({"3"})
    view = board(models, tmp_path)
    await view.apply(record(10, "2"))
    assert await view.apply(record(11, "2", "3")) is False
    assert view.get("m") == Deployment("m", "2")
    assert "3 is broken" in view.failing()["m"]
    assert view.pending()["m"].generation == 11
    models.broken.clear()  # loads on a later retry
    await view._retry_pending()
    assert view.get("m") == Deployment("m", "2", "3", "shadow", 0.0)
    assert view.failing() == {} and view.pending() == {}


async def test_a_replayed_history_loads_only_the_newest_record(tmp_path: Path) -> None:
    models = Models(set())
    view = board(models, tmp_path)
    history = [record(g, str(g)) for g in (3, 1, 7, 5)]
    await view._apply_raw((b"m", r.seal(AUTH, TOPIC)) for r in history)
    assert view.get("m") == Deployment("m", "7")
    assert models.prepared == [("m", "7")]


async def test_an_invalid_record_on_the_topic_is_skipped(tmp_path: Path) -> None:
    view = board(Models(set()), tmp_path)
    signed = AUTH.seal(TOPIC, raw(generation=3, champion="4"))
    await view._apply_raw([(b"m", b"not json"), (b"m", signed), (b"m", None)])
    assert view.get("m") == Deployment("m", "4")


async def test_a_forged_record_on_the_topic_changes_nothing(tmp_path: Path) -> None:
    view = board(Models(set()), tmp_path)
    unsigned = orjson.dumps(raw(generation=3, champion="4"))
    other_key = ControlAuth("x" * 32).seal(TOPIC, raw(generation=3, champion="4"))
    await view._apply_raw([(b"m", unsigned), (b"m", other_key)])
    assert view.get("m") == Deployment("m", "1") and view.highest_generation("m") == 0


def read(key: bytes | None, value: bytes | None, *, now: float = NOW) -> DeploymentRecord:
    return read_record(TOPIC, key, value, AUTH, registered=lambda m: m == "m", now_s=now)


def test_read_record_takes_a_signed_record_keyed_by_its_registered_model() -> None:
    record = parse_record(raw(generation=int(NOW * 1000)))
    assert read(b"m", record.seal(AUTH, TOPIC)) == record


@pytest.mark.parametrize(
    ("key", "value", "field", "authentic"),
    [
        (b"m", orjson.dumps(raw()), "auth", False),  # unsigned
        (b"m", ControlAuth("x" * 32).seal(TOPIC, raw()), "auth", False),  # another key
        (b"m", AUTH.seal("retrain", raw()), "auth", False),  # signed for another topic
        (b"not-m", AUTH.seal(TOPIC, raw()), "key", False),  # keyed by another model
        (None, AUTH.seal(TOPIC, raw()), "key", False),
        (b"ghost", AUTH.seal(TOPIC, raw(model="ghost")), "model", True),  # not registered
        (b"m", AUTH.seal(TOPIC, raw(generation=2**63 - 1)), "generation", True),
    ],
)
def test_read_record_refuses_what_no_publisher_made(
    key: bytes | None, value: bytes, field: str, authentic: bool
) -> None:
    with pytest.raises(ValidationError) as caught:
        read(key, value)
    assert caught.value.field == field
    assert isinstance(caught.value, Unauthenticated) is not authentic


def test_a_generation_up_to_the_lead_is_taken_and_beyond_it_refused() -> None:
    limit = int((NOW + MAX_GENERATION_LEAD_S) * 1000)
    assert read(b"m", AUTH.seal(TOPIC, raw(generation=limit))).generation == limit
    with pytest.raises(ValidationError, match="ahead"):
        read(b"m", AUTH.seal(TOPIC, raw(generation=limit + 1)))
    # The next publisher's generation after the highest accepted one still fits.
    assert next_generation(limit, clock=lambda: NOW) < 2**63


def test_challenger_by_defaults_to_the_actor_and_is_empty_without_a_challenger() -> None:
    shadow = parse_record(raw(challenger="2", strategy="shadow", actor="admin"))
    assert shadow.challenger_by == "admin"
    kept = parse_record(raw(challenger="2", strategy="shadow", actor="rollout-controller",
                            challenger_by="admin"))  # fmt: skip
    assert kept.challenger_by == "admin"
    assert parse_record(raw(actor="admin", challenger_by="admin")).challenger_by == ""
