"""The inference core shared by the Kafka agent and the HTTP view.

``Predictor.predict`` takes validated requests and returns served predictions, shadow
predictions and rejections. Per batch it makes one feature-store read (one MGET) and
one ONNX call per model version; nothing in it is per-record I/O. Model versions the
batch needs are loaded off the event loop before scoring (``ModelSource.prepare``), so
routing and scoring never block on a load.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from phoenix_stream import metrics
from phoenix_stream.exceptions import FeatureStoreError, ModelLoadError
from phoenix_stream.features.enrich import assemble, unknown_overrides
from phoenix_stream.features.store import StoredFeatures
from phoenix_stream.messages.requests import ParsedRequest
from phoenix_stream.serving.router import CHALLENGER, Deployment, Route, route
from phoenix_stream.settings import EntityPolicy


class ServableModel(Protocol):
    """What the predictor needs of a loaded model version."""

    @property
    def version(self) -> str: ...
    @property
    def feature_names(self) -> tuple[str, ...]: ...
    @property
    def feature_name_set(self) -> frozenset[str]: ...
    @property
    def feature_defaults(self) -> np.ndarray: ...
    @property
    def threshold(self) -> float: ...
    @property
    def positive_label(self) -> int: ...
    def predict_proba(self, rows: np.ndarray) -> np.ndarray: ...


class ModelSource(Protocol):
    """Model versions: loaded off the loop by ``prepare``, then looked up without blocking."""

    async def prepare(self, keys: Iterable[tuple[str, str]]) -> None:
        """Load the (model, version) keys not loaded yet; never raises for a failed load."""
        ...

    def lookup(self, model: str, version: str) -> ServableModel:
        """The loaded version; ``ModelLoadError`` (with why) when it is not loaded."""
        ...


class FeatureReader(Protocol):
    """The part of the feature store the predictor uses."""

    async def get_many(self, entity_ids: Sequence[str]) -> list[StoredFeatures | None]: ...


@dataclass(slots=True)
class Scored:
    """One prediction, served or shadow: exactly the fields of ``records.Prediction``.

    Flat on purpose: orjson encodes a dataclass directly, about twice as fast as building
    a dict per prediction (``encoding.encode_prediction``).
    """

    request_id: str
    entity_id: str
    model: str
    version: str
    variant: str
    score: float
    label: int
    features: dict[str, float]  # the vector the model saw, by name
    defaults_used: list[str]
    degraded: bool
    source: str
    received_at: float  # seconds since epoch
    predicted_at: float  # seconds since epoch
    latency_ms: float  # received_at -> predicted_at, ms
    sent_at: float | None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A valid-looking request that could not be served, with a dead-letter kind."""

    request: ParsedRequest
    # unknown_model | unknown_feature | unknown_entity | features_unavailable | model_error
    kind: str
    error: str
    field: str | None


@dataclass(slots=True)
class Outcome:
    """Everything ``Predictor.predict`` produced for one batch."""

    served: list[Scored] = field(default_factory=list)
    shadow: list[Scored] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    # The request behind each served / shadow prediction, index for index.
    served_for: list[ParsedRequest] = field(default_factory=list)
    shadow_for: list[ParsedRequest] = field(default_factory=list)


@dataclass(slots=True)
class _Pending:
    request: ParsedRequest
    route: Route
    stored: StoredFeatures | None = None


class Predictor:
    """Enrich, route and score batches of requests."""

    def __init__(
        self,
        models: ModelSource,
        features: FeatureReader,
        deployments: Callable[[str], Deployment | None],
        *,
        feature_max_age_s: float,
        unknown_entity_policy: EntityPolicy,
        redis_down_policy: EntityPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._models = models
        self._features = features
        self._deployments = deployments
        self._max_age_s = feature_max_age_s
        self._unknown_entity_policy = unknown_entity_policy
        self._redis_down_policy = redis_down_policy
        self._clock = clock

    async def predict(
        self, requests: Sequence[ParsedRequest], *, source: str, received_at: float
    ) -> Outcome:
        """Score ``requests`` (seconds since epoch for ``received_at``)."""
        started = time.perf_counter()
        outcome = Outcome()
        # Per batch, each model's deployment is looked up once, not once per request.
        deployments = {model: self._deployments(model) for model in {r.model for r in requests}}
        await self._models.prepare(_deployed_versions(deployments))
        pending = self._route(requests, deployments, outcome)
        routed = time.perf_counter()
        metrics.STAGE_DURATION.labels("routing").observe(routed - started)
        if not pending:
            return outcome
        degraded = await self._read_features(pending)
        enriched = time.perf_counter()
        metrics.STAGE_DURATION.labels("enrichment").observe(enriched - routed)
        if degraded and self._redis_down_policy == "dead-letter":
            for item in pending:
                outcome.rejected.append(
                    Rejection(
                        item.request, "features_unavailable", "feature store unavailable", None
                    )
                )
            return outcome
        if not degraded and self._unknown_entity_policy == "dead-letter":
            pending = self._reject_unknown_entities(pending, outcome)
        by_version: dict[tuple[str, str], list[_Pending]] = defaultdict(list)
        shadows: dict[tuple[str, str], list[_Pending]] = defaultdict(list)
        for item in pending:
            by_version[(item.request.model, item.route.version)].append(item)
            if item.route.shadow_version is not None:
                shadows[(item.request.model, item.route.shadow_version)].append(item)
        for groups, into, shadow in (
            (by_version, outcome.served, False),
            (shadows, outcome.shadow, True),
        ):
            for (model, version), group in groups.items():
                self._score(
                    model,
                    version,
                    group,
                    degraded,
                    source,
                    received_at,
                    into,
                    outcome,
                    shadow=shadow,
                )
        metrics.STAGE_DURATION.labels("inference").observe(time.perf_counter() - enriched)
        return outcome

    def _route(
        self,
        requests: Sequence[ParsedRequest],
        deployments: dict[str, Deployment | None],
        outcome: Outcome,
    ) -> list[_Pending]:
        pending: list[_Pending] = []
        # Per batch, each version's feature names are looked up once, not once per request.
        names_of: dict[tuple[str, str], frozenset[str] | ModelLoadError] = {}
        for request in requests:
            model = request.model
            deployment = deployments[model]
            if deployment is None:
                error = f"model {model!r} is not deployed"
                outcome.rejected.append(Rejection(request, "unknown_model", error, "model"))
                continue
            decision = route(deployment, request.entity_id)
            key = (model, decision.version)
            names = names_of.get(key)
            if names is None:
                try:
                    names = self._models.lookup(model, decision.version).feature_name_set
                except ModelLoadError as exc:
                    names = exc
                names_of[key] = names
            if isinstance(names, ModelLoadError):
                outcome.rejected.append(Rejection(request, "model_error", str(names), "model"))
                continue
            extra = unknown_overrides(names, request.features)
            if extra is not None:
                error = f"features.{extra}: model {model!r} has no such feature"
                outcome.rejected.append(
                    Rejection(request, "unknown_feature", error, f"features.{extra}")
                )
                continue
            pending.append(_Pending(request, decision))
        return pending

    async def _read_features(self, pending: list[_Pending]) -> bool:
        """Fill stored features with one MGET; True when the store was unreachable."""
        # Entities repeat within a batch; each key is read (and decoded) once.
        unique = list(dict.fromkeys(p.request.entity_id for p in pending))
        try:
            stored = await self._features.get_many(unique)
        except FeatureStoreError:
            metrics.FEATURE_STORE_ERRORS.inc()
            return True
        by_entity = dict(zip(unique, stored, strict=True))
        for item in pending:
            item.stored = by_entity[item.request.entity_id]
        return False

    def _reject_unknown_entities(self, pending: list[_Pending], outcome: Outcome) -> list[_Pending]:
        kept: list[_Pending] = []
        for item in pending:
            if item.stored is None:
                outcome.rejected.append(
                    Rejection(
                        item.request,
                        "unknown_entity",
                        f"entity {item.request.entity_id!r} has no stored features",
                        "entity_id",
                    )
                )
            else:
                kept.append(item)
        return kept

    def _score(
        self,
        model: str,
        version: str,
        group: list[_Pending],
        degraded: bool,
        source: str,
        received_at: float,
        into: list[Scored],
        outcome: Outcome,
        *,
        shadow: bool,
    ) -> None:
        try:
            servable = self._models.lookup(model, version)
            matrix = assemble(
                servable.feature_names,
                servable.feature_defaults,
                [p.stored for p in group],
                [p.request.features for p in group],
                now=received_at,
                max_age_s=self._max_age_s,
            )
            scores = servable.predict_proba(matrix.values)
        except ModelLoadError as exc:
            if not shadow:  # a failing shadow model must never cost a served answer
                outcome.rejected.extend(
                    Rejection(p.request, "model_error", str(exc), "model") for p in group
                )
            return
        predicted_at = self._clock()
        latency_ms = (predicted_at - received_at) * 1000.0
        names = servable.feature_names
        # The score is P(positive_label); tolist() gives ints, which JSON writes as 0/1.
        positive = servable.positive_label
        labels = np.where(scores >= servable.threshold, positive, 1 - positive).tolist()
        append = into.append
        (outcome.shadow_for if shadow else outcome.served_for).extend(p.request for p in group)
        for item, score, label, row, used in zip(
            group, scores.tolist(), labels, matrix.rows, matrix.defaults_used, strict=True
        ):
            request = item.request
            variant = CHALLENGER if shadow else item.route.variant
            features = dict(zip(names, row, strict=False))  # rows are built len(names) long
            append(
                Scored(
                    request.request_id,
                    request.entity_id,
                    model,
                    version,
                    variant,
                    score,
                    label,
                    features,
                    used,
                    degraded,
                    source,
                    received_at,
                    predicted_at,
                    latency_ms,
                    request.sent_at,
                )
            )
        defaulted = sum(1 for used in matrix.defaults_used if used)
        if defaulted and not shadow:
            metrics.DEFAULTED_PREDICTIONS.labels(model=model).inc(defaulted)


def _deployed_versions(deployments: dict[str, Deployment | None]) -> list[tuple[str, str]]:
    """Every (model, version) the deployments may route to or shadow with."""
    keys: list[tuple[str, str]] = []
    for model, deployment in deployments.items():
        if deployment is not None:
            keys.append((model, deployment.champion))
            if deployment.challenger is not None:
                keys.append((model, deployment.challenger))
    return keys
