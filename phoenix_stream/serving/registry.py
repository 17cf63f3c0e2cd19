"""The model registry on disk: ``<models_dir>/<name>/<version>/{model.onnx,manifest.json}``.

A version exists once its ``manifest.json`` does (training writes it last). Loaded versions
are cached and shared; loading is thread-safe and a failed load is not cached, so a version
repaired on disk loads on the next try.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phoenix_stream.exceptions import ModelLoadError, UnknownModelError
from phoenix_stream.messages.validation import is_identifier
from phoenix_stream.serving.engine import OnnxModel
from phoenix_stream.serving.manifest import MANIFEST_FILE, MODEL_FILE, Manifest

__all__ = ["LoadedModel", "ModelRegistry"]


@dataclass(frozen=True)
class LoadedModel:
    """One model version ready to serve: its manifest and its ONNX engine."""

    manifest: Manifest
    engine: OnnxModel
    path: Path  # the version directory

    @property
    def key(self) -> tuple[str, str]:
        """(name, version)."""
        return self.manifest.name, self.manifest.version

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(positive_label), float32 (n,), for X float32 (n, F) in manifest feature order."""
        return self.engine.predict_proba(X)

    def labels(self, proba: np.ndarray) -> np.ndarray:
        """Labels, int64 (n,): positive_label where proba >= threshold, else the other class."""
        positive = self.manifest.output.positive_label
        return np.where(proba >= self.manifest.output.threshold, positive, 1 - positive).astype(
            np.int64
        )


def _version_key(version: str) -> tuple[int, int, str]:
    # Numeric versions first, in numeric order ("2" < "10"); others after, alphabetically.
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


class ModelRegistry:
    """Model versions under ``models_dir``, loaded on demand and cached (thread-safe).

    ``intra_op_threads`` is passed to each ONNX session (threads per inference call).
    """

    def __init__(self, models_dir: Path, intra_op_threads: int = 1) -> None:
        self.models_dir = Path(models_dir)
        self.intra_op_threads = intra_op_threads
        self._cache: dict[tuple[str, str], LoadedModel] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def names(self) -> list[str]:
        """Model names that have at least one complete version, sorted."""
        if not self.models_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.models_dir.iterdir()
            if is_identifier(p.name) and self.versions(p.name)
        )

    def versions(self, name: str) -> list[str]:
        """Complete versions of ``name`` (those with a manifest), numeric order when numeric."""
        model_dir = self.models_dir / name
        if not is_identifier(name) or not model_dir.is_dir():
            return []
        found = [
            p.name
            for p in model_dir.iterdir()
            if is_identifier(p.name) and (p / MANIFEST_FILE).is_file()
        ]
        return sorted(found, key=_version_key)

    def latest(self, name: str) -> str:
        """The highest version of ``name``; UnknownModelError if it has none."""
        versions = self.versions(name)
        if not versions:
            raise UnknownModelError(f"no versions of model {name!r} in {self.models_dir}")
        return versions[-1]

    def load(self, name: str, version: str) -> LoadedModel:
        """The loaded version (cached); ModelLoadError with the cause if it cannot be loaded."""
        key = (name, version)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        # One lock per version: concurrent loads of one version build one session, while
        # different versions load in parallel.
        with lock:
            cached = self._cache.get(key)
            if cached is None:
                cached = self._load_uncached(name, version)
                self._cache[key] = cached
            return cached

    def evict(self, name: str, version: str) -> bool:
        """Drop a version from the cache (callers holding it keep it); whether it was cached."""
        return self._cache.pop((name, version), None) is not None

    def _load_uncached(self, name: str, version: str) -> LoadedModel:
        if not is_identifier(name) or not is_identifier(version):
            raise ModelLoadError(f"invalid model name or version: {name!r} {version!r}")
        version_dir = self.models_dir / name / version
        manifest_path = version_dir / MANIFEST_FILE
        if not manifest_path.is_file():
            known = self.versions(name)
            raise ModelLoadError(f"model {name!r} has no version {version!r} (known: {known})")
        manifest = Manifest.from_file(manifest_path)
        if (manifest.name, manifest.version) != (name, version):
            raise ModelLoadError(
                f"{manifest_path}: says {manifest.name!r} version {manifest.version!r}, "
                f"but lives at {name!r} version {version!r}"
            )
        # Binary classifiers export their classes sorted, so label 0 or 1 is that column.
        engine = OnnxModel(
            version_dir / MODEL_FILE,
            intra_op_threads=self.intra_op_threads,
            positive_column=manifest.output.positive_label,
        )
        if engine.n_features != len(manifest.features):
            raise ModelLoadError(
                f"{version_dir}: ONNX input has {engine.n_features} features, "
                f"manifest lists {len(manifest.features)}"
            )
        if engine.input_name != manifest.input_name:
            raise ModelLoadError(
                f"{version_dir}: ONNX input is {engine.input_name!r}, "
                f"manifest says {manifest.input_name!r}"
            )
        return LoadedModel(manifest=manifest, engine=engine, path=version_dir)
