"""Serving view of the model registry: deployments and ready-to-score model versions.

``Deployments`` answers "who serves model X" for the router. In this version the
default model's deployment comes from settings and every other model in the registry is
served by its latest version alone; a later change feeds it from the ``deployments``
topic without touching the predictor.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from phoenix_stream.exceptions import UnknownModelError
from phoenix_stream.serving.registry import LoadedModel, ModelRegistry
from phoenix_stream.serving.router import Deployment


@dataclass(frozen=True, slots=True)
class Servable:
    """A loaded model version in the shape the predictor scores with."""

    name: str
    version: str
    feature_names: tuple[str, ...]
    feature_name_set: frozenset[str]
    feature_defaults: np.ndarray  # float32, shape (F,)
    threshold: float
    loaded: LoadedModel

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Positive-class probability for float32 rows of shape (n, F)."""
        return self.loaded.predict_proba(rows)


class ServingModels:
    """Model versions by (name, version), loaded once and kept (thread-safe)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._cache: dict[tuple[str, str], Servable] = {}
        self._lock = threading.Lock()

    def get(self, model: str, version: str) -> Servable:
        """The servable version; raises ``ModelLoadError`` if it cannot be loaded."""
        key = (model, version)
        servable = self._cache.get(key)
        if servable is not None:
            return servable
        with self._lock:
            servable = self._cache.get(key)
            if servable is None:
                loaded = self.registry.load(model, version)
                manifest = loaded.manifest
                servable = Servable(
                    model,
                    version,
                    manifest.feature_names,
                    frozenset(manifest.feature_names),
                    manifest.defaults(),
                    manifest.output.threshold,
                    loaded,
                )
                self._cache[key] = servable
        return servable


class Deployments:
    """Who serves each model name: static for now (settings + registry)."""

    def __init__(self, default: Deployment, registry: ModelRegistry) -> None:
        self._default = default
        self._registry = registry
        self._others: dict[str, Deployment] = {}

    def get(self, model: str) -> Deployment | None:
        """The deployment for ``model``, or None when no such model exists."""
        if model == self._default.model:
            return self._default
        deployment = self._others.get(model)
        if deployment is None:
            # Not cached when missing: a model copied into the registry later is found.
            try:
                deployment = Deployment(model, self._registry.latest(model))
            except UnknownModelError:
                return None
            self._others[model] = deployment
        return deployment

    def names(self) -> list[str]:
        """Every model name that can be served."""
        names = set(self._registry.names())
        names.add(self._default.model)
        return sorted(names)
