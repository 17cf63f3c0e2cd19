"""The predictor with in-memory stand-ins for Redis and ONNX.

The same behaviour runs against real Redis, ONNX models and Kafka in
tests/integration/test_pipeline.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from phoenix_stream.exceptions import FeatureStoreError, ModelLoadError
from phoenix_stream.features.codec import StoredFeatures
from phoenix_stream.messages.requests import ParsedRequest
from phoenix_stream.serving.predictor import Predictor
from phoenix_stream.serving.router import Deployment
from phoenix_stream.settings import EntityPolicy


@dataclass(frozen=True)
class LinearModel:
    """score = sigmoid(sum of features / scale): enough to check wiring."""

    version: str
    scale: float
    feature_names: tuple[str, ...] = ("age", "amount")
    threshold: float = 0.5
    positive_label: int = 1

    @property
    def feature_name_set(self) -> frozenset[str]:
        return frozenset(self.feature_names)

    @property
    def feature_defaults(self) -> np.ndarray:
        return np.array([40.0, 10.0], dtype=np.float32)

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-rows.sum(axis=1) / self.scale))).astype(np.float32)


class Models:
    """ServingModels' interface: ``lookup`` only finds what ``prepare`` was awaited for."""

    def __init__(self, broken: frozenset[str] = frozenset(), positive_label: int = 1) -> None:
        self.broken = broken
        self.positive_label = positive_label
        self.prepared: list[list[tuple[str, str]]] = []  # the keys of each prepare call
        self.loaded: dict[tuple[str, str], LinearModel] = {}
        self.failed: dict[tuple[str, str], str] = {}

    async def prepare(self, keys: Iterable[tuple[str, str]]) -> None:
        keys = list(keys)
        self.prepared.append(keys)
        for model, version in keys:
            if version in self.broken:
                self.failed[(model, version)] = f"{model} {version} is broken"
            else:
                scale = 10.0 if version == "1" else -10.0
                self.loaded[(model, version)] = LinearModel(
                    version, scale=scale, positive_label=self.positive_label
                )

    def lookup(self, model: str, version: str) -> LinearModel:
        servable = self.loaded.get((model, version))
        if servable is None:
            raise ModelLoadError(self.failed.get((model, version), "not loaded yet"))
        return servable


class Features:
    def __init__(self, data: dict[str, StoredFeatures], down: bool = False) -> None:
        self.data = data
        self.down = down
        self.calls: list[list[str]] = []

    async def get_many(self, entity_ids: Sequence[str]) -> list[StoredFeatures | None]:
        self.calls.append(list(entity_ids))
        if self.down:
            raise FeatureStoreError("connection refused")
        return [self.data.get(e) for e in entity_ids]


def request(i: int, entity: str = "known", model: str = "m", **features: float) -> ParsedRequest:
    return ParsedRequest(f"r{i}", entity, model, features or None, None, None)


def predictor(
    features: Features,
    deployment: Deployment,
    *,
    unknown: EntityPolicy = "defaults",
    down: EntityPolicy = "defaults",
    broken: frozenset[str] = frozenset(),
    models: Models | None = None,
) -> Predictor:
    return Predictor(
        models or Models(broken),
        features,
        {"m": deployment}.get,
        feature_max_age_s=60.0,
        unknown_entity_policy=unknown,
        redis_down_policy=down,
        clock=lambda: 1001.0,
    )


STORE = {"known": StoredFeatures({"age": 30.0}, updated_at=1000.0)}


async def test_one_feature_read_per_batch_and_vectors() -> None:
    features = Features(STORE)
    p = predictor(features, Deployment("m", "1"))
    outcome = await p.predict(
        [request(1, amount=5.0), request(2, "nobody")], source="kafka", received_at=1000.5
    )
    assert features.calls == [["known", "nobody"]]
    first, second = outcome.served
    assert first.features == {"age": 30.0, "amount": 5.0} and first.defaults_used == []
    assert second.features == {"age": 40.0, "amount": 10.0}
    assert second.defaults_used == ["age", "amount"]
    assert first.score == pytest.approx(1 / (1 + np.exp(-3.5)), rel=1e-6)
    assert first.label == 1 and type(first.label) is int  # JSON 1, not true
    assert first.latency_ms == pytest.approx(500.0)
    assert not outcome.rejected and not outcome.shadow


async def test_rejections_name_the_problem() -> None:
    p = predictor(Features(STORE), Deployment("m", "1"), unknown="dead-letter")
    outcome = await p.predict(
        [request(1, model="nope"), request(2, colour=1.0), request(3, "nobody"), request(4)],
        source="kafka",
        received_at=1000.0,
    )
    kinds = [(r.request.request_id, r.kind, r.field) for r in outcome.rejected]
    assert kinds == [
        ("r1", "unknown_model", "model"),
        ("r2", "unknown_feature", "features.colour"),
        ("r3", "unknown_entity", "entity_id"),
    ]
    assert [s.request_id for s in outcome.served] == ["r4"]


async def test_feature_store_down_degrades_or_dead_letters() -> None:
    down = Features(STORE, down=True)
    degraded = await predictor(down, Deployment("m", "1")).predict(
        [request(1)], source="http", received_at=1000.0
    )
    assert degraded.served[0].degraded and degraded.served[0].defaults_used == ["age", "amount"]
    strict = await predictor(down, Deployment("m", "1"), down="dead-letter").predict(
        [request(1)], source="http", received_at=1000.0
    )
    assert not strict.served and strict.rejected[0].kind == "features_unavailable"


async def test_ab_routes_by_entity_and_shadow_scores_challenger() -> None:
    entities = [f"e{i}" for i in range(400)]
    ab = predictor(Features({}), Deployment("m", "1", "2", "ab", 0.5))
    outcome = await ab.predict(
        [request(i, e) for i, e in enumerate(entities)], source="kafka", received_at=1000.0
    )
    variants = {s.entity_id: (s.variant, s.version) for s in outcome.served}
    assert set(variants.values()) == {("champion", "1"), ("challenger", "2")}
    again = await ab.predict([request(9, "e7")], source="kafka", received_at=1000.0)
    assert (again.served[0].variant, again.served[0].version) == variants["e7"]

    shadow = predictor(Features({}), Deployment("m", "1", "2", "shadow"))
    outcome = await shadow.predict(
        [request(1), request(2, "x")], source="kafka", received_at=1000.0
    )
    assert [(s.variant, s.version) for s in outcome.served] == [("champion", "1")] * 2
    assert [(s.variant, s.version) for s in outcome.shadow] == [("challenger", "2")] * 2
    assert outcome.shadow[0].score != outcome.served[0].score


async def test_broken_shadow_never_costs_the_served_answer() -> None:
    p = predictor(Features({}), Deployment("m", "1", "2", "shadow"), broken=frozenset({"2"}))
    outcome = await p.predict([request(1)], source="kafka", received_at=1000.0)
    assert len(outcome.served) == 1 and not outcome.shadow and not outcome.rejected


async def test_needed_versions_are_prepared_once_per_batch_before_scoring() -> None:
    models = Models()
    p = predictor(Features({}), Deployment("m", "1", "2", "shadow"), models=models)
    outcome = await p.predict(
        [request(1), request(2, "x"), request(3, model="nope")], source="kafka", received_at=1000.0
    )
    # One prepare per batch with the served and the shadow version; the unknown model
    # prepares nothing.
    assert models.prepared == [[("m", "1"), ("m", "2")]]
    assert len(outcome.served) == 2 and len(outcome.shadow) == 2
    assert [r.kind for r in outcome.rejected] == ["unknown_model"]


async def test_a_version_that_cannot_load_rejects_only_its_requests() -> None:
    entities = [f"e{i}" for i in range(200)]
    p = predictor(Features({}), Deployment("m", "1", "2", "ab", 0.5), broken=frozenset({"2"}))
    outcome = await p.predict(
        [request(i, e) for i, e in enumerate(entities)], source="kafka", received_at=1000.0
    )
    assert outcome.served and {s.version for s in outcome.served} == {"1"}
    assert outcome.rejected
    assert {(r.kind, r.error, r.field) for r in outcome.rejected} == {
        ("model_error", "m 2 is broken", "model")
    }
    assert len(outcome.served) + len(outcome.rejected) == len(entities)


async def test_labels_follow_the_manifests_positive_label() -> None:
    # Scores straddling the threshold: sigmoid((age + amount) / 10) for sums -10..10.
    batch = [request(i, "nobody", age=float(a), amount=0.0) for i, a in enumerate(range(-10, 11))]
    outcomes = {}
    for positive in (1, 0):
        p = predictor(Features({}), Deployment("m", "1"), models=Models(positive_label=positive))
        outcomes[positive] = (await p.predict(batch, source="kafka", received_at=1000.0)).served
    ones, zeros = outcomes[1], outcomes[0]
    assert [s.score for s in ones] == [s.score for s in zeros]
    assert [s.label for s in ones] == [1 if s.score >= 0.5 else 0 for s in ones]
    assert {0, 1} == {s.label for s in ones}
    assert [s.label for s in zeros] == [1 - s.label for s in ones]
    assert all(type(s.label) is int for s in zeros)
