"""The trainer a retraining runs: one run's inputs (``TrainSpec``) to a written version."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from phoenix_stream.serving.manifest import Manifest

__all__ = ["KIND", "TrainSpec", "Trainer", "train_gradient_boosting"]

KIND: Literal["hist_gradient_boosting"] = "hist_gradient_boosting"


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """One training run: write ``<folder>/<name>/<version>`` from X float32 (n, F), y (n,)."""

    folder: Path
    name: str
    version: str
    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    profile_features: tuple[str, ...]
    threshold: float
    seed: int


Trainer = Callable[[TrainSpec], Manifest]


def train_gradient_boosting(spec: TrainSpec) -> Manifest:
    """The default trainer: ``training.train.train_version`` (gradient boosting), 1 thread.

    Blocking (seconds); run it in a thread. One OpenMP thread, so serving keeps a core.
    """
    # Imported here: scikit-learn and skl2onnx load only in a worker that trains.
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped,unused-ignore]

    from phoenix_stream.training.train import train_version

    with threadpool_limits(limits=1):
        return train_version(
            spec.folder,
            spec.name,
            spec.version,
            spec.X,
            spec.y,
            KIND,
            spec.seed,
            feature_names=spec.feature_names,
            profile_features=spec.profile_features,
            threshold=spec.threshold,
        )
