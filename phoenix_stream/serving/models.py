"""Serving view of the model registry: ready-to-score model versions.

``ServingModels`` loads versions off the event loop (``prepare``) and hands loaded ones to
the hot path without blocking (``lookup``). A version that fails to load is remembered
and not tried again before ``retry_s`` seconds, so a broken model costs one load attempt
per delay, not one per batch, while the versions already loaded keep serving.

Who serves each model is ``lifecycle.deployments``' to say (the deployment board).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from phoenix_stream import metrics
from phoenix_stream.exceptions import ModelLoadError
from phoenix_stream.serving.registry import LoadedModel

__all__ = ["LoadFailure", "ModelLoader", "Servable", "ServingModels"]

log = logging.getLogger(__name__)

ModelKey = tuple[str, str]  # (model name, version)


@dataclass(frozen=True, slots=True)
class Servable:
    """A loaded model version in the shape the predictor scores with."""

    name: str
    version: str
    feature_names: tuple[str, ...]
    feature_name_set: frozenset[str]
    feature_defaults: np.ndarray  # float32, shape (F,)
    threshold: float  # a score >= threshold is labelled positive_label
    positive_label: int  # 0 or 1: the class whose probability the score is
    loaded: LoadedModel

    @classmethod
    def of(cls, loaded: LoadedModel) -> Servable:
        """The servable form of a loaded version."""
        manifest = loaded.manifest
        return cls(
            manifest.name,
            manifest.version,
            manifest.feature_names,
            frozenset(manifest.feature_names),
            manifest.defaults(),
            manifest.output.threshold,
            manifest.output.positive_label,
            loaded,
        )

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """P(positive_label), float32 (n,), for float32 rows of shape (n, F)."""
        return self.loaded.predict_proba(rows)


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """Why a version could not be loaded, and when it may be tried again (clock seconds)."""

    reason: str
    failed_at: float  # clock seconds of the last failed attempt
    retry_at: float  # clock seconds; no new attempt before this
    attempts: int  # consecutive failed attempts


class ModelLoader(Protocol):
    """Reads a model version from disk (blocking); ``ModelRegistry`` is one."""

    def load(self, name: str, version: str) -> LoadedModel: ...


class ServingModels:
    """Model versions by (name, version): loaded off the loop once, then kept.

    Used from the event loop only (its state is not shared with threads); the loads
    themselves run in worker threads. ``clock`` is in seconds (monotonic by default).
    """

    def __init__(
        self,
        registry: ModelLoader,
        *,
        retry_s: float,
        clock: Callable[[], float] = time.monotonic,
        registered: Callable[[str, str], bool] = lambda model, version: True,
    ) -> None:
        self.registry = registry
        # Metric series only for registered versions: names from records are anyone's.
        self._registered = registered
        self._retry_s = retry_s
        self._clock = clock
        self._cache: dict[ModelKey, Servable] = {}
        self._failures: dict[ModelKey, LoadFailure] = {}
        self._loading: dict[ModelKey, asyncio.Task[None]] = {}

    def lookup(self, model: str, version: str) -> Servable:
        """The loaded version, without blocking; ``ModelLoadError`` if it is not loaded.

        The error carries the remembered failure's reason, or says the version has not
        been loaded yet (``prepare`` was not awaited for it).
        """
        servable = self._cache.get((model, version))
        if servable is not None:
            return servable
        failure = self._failures.get((model, version))
        if failure is not None:
            raise ModelLoadError(failure.reason)
        raise ModelLoadError(f"model {model!r} version {version!r} is not loaded yet")

    def failures(self) -> dict[ModelKey, LoadFailure]:
        """The versions whose last load attempt failed, with why (a copy)."""
        return dict(self._failures)

    async def prepare(self, keys: Iterable[ModelKey]) -> None:
        """Load the missing versions among ``keys`` in threads; returns when each is settled.

        Never raises for a version that cannot load: the failure is remembered (see
        ``lookup`` and ``failures``) and not retried before ``retry_s`` seconds. Concurrent
        callers share one load per version.
        """
        waits: list[asyncio.Task[None]] = []
        now: float | None = None
        for key in keys:
            if key in self._cache:
                continue
            task = self._loading.get(key)
            if task is None:
                failure = self._failures.get(key)
                if failure is not None:
                    now = self._clock() if now is None else now
                    if now < failure.retry_at:
                        continue
                task = self._loading[key] = asyncio.create_task(self._load(key))
            waits.append(task)
        if waits:
            # Shielded: a caller that gives up (a cancelled HTTP request) must not cancel a
            # load that other callers wait for.
            await asyncio.shield(asyncio.gather(*waits))

    async def _load(self, key: ModelKey) -> None:
        """One load attempt of ``key`` in a thread; records the servable or the failure."""
        model, version = key
        try:
            loaded = await asyncio.to_thread(self.registry.load, model, version)
            servable = Servable.of(loaded)
        except Exception as exc:  # recorded, logged and retried later, whatever it was
            self._fail(key, exc)
        else:
            self._cache[key] = servable
            self._failures.pop(key, None)
            metrics.MODEL_LOADED.labels(model=model, version=version).set(1)
            metrics.MODEL_LOAD_FAILURES.labels(model=model, version=version)  # from 0
            log.info("loaded model %s version %s", model, version)
        finally:
            del self._loading[key]

    def _fail(self, key: ModelKey, exc: Exception) -> None:
        model, version = key
        now = self._clock()
        previous = self._failures.get(key)
        attempts = 1 if previous is None else previous.attempts + 1
        # A ModelLoadError already reads well; anything else is a bug worth its type.
        reason = str(exc) if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"
        self._failures[key] = LoadFailure(reason, now, now + self._retry_s, attempts)
        if self._registered(model, version):
            metrics.MODEL_LOAD_FAILURES.labels(model=model, version=version).inc()
            metrics.MODEL_LOADED.labels(model=model, version=version).set(0)
        log.error(
            "could not load model %s version %s (attempt %d, next in %.0f s): %s",
            model,
            version,
            attempts,
            self._retry_s,
            reason,
            exc_info=not isinstance(exc, ModelLoadError),
        )
