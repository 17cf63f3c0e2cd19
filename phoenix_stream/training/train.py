"""Training, ONNX export and registration of model versions (the demo models and retraining).

A version is fitted with scikit-learn, exported with skl2onnx (probability tensor, no
zipmap), checked against sklearn on held-out rows and written as
``<models_dir>/<name>/<version>/{model.onnx,manifest.json}`` in one directory rename.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_classifier
from sklearn.base import is_classifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from phoenix_stream.exceptions import TrainingError
from phoenix_stream.serving.engine import OnnxModel
from phoenix_stream.serving.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    FeatureSpec,
    Manifest,
    OutputSpec,
)
from phoenix_stream.training.datagen import FEATURE_NAMES, PROFILE_FEATURES, make_dataset
from phoenix_stream.training.demo_models import (
    DEMO_MODEL_NAME,
    DEMO_VERSIONS,
    ModelKind,
    demo_models_present,
)

__all__ = [
    "DEMO_MODEL_NAME",
    "ModelKind",
    "ensure_demo_models",
    "export_onnx",
    "train_demo_models",
    "train_version",
]

log = logging.getLogger(__name__)

INPUT_NAME = "input"
PARITY_TOLERANCE = 1e-4  # max |p_onnx - p_sklearn| allowed on held-out rows
REFERENCE_SIZE = 5000  # training rows kept per feature in the manifest: the drift reference
# Opsets every onnxruntime >= 1.18 runs; ai.onnx.ml 3 keeps TreeEnsembleClassifier.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}

_ALGORITHMS: dict[ModelKind, str] = {
    "hist_gradient_boosting": "sklearn HistGradientBoostingClassifier (100 trees, 31 leaves)",
    "logistic_regression": "sklearn StandardScaler + LogisticRegression (C=1)",
}


def _build_estimator(kind: ModelKind, seed: int) -> Any:
    if kind == "hist_gradient_boosting":
        # No early stopping: always 100 trees, and no random validation split to vary.
        return HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.1, max_leaf_nodes=31, early_stopping=False,
            random_state=seed,
        )  # fmt: skip
    if kind == "logistic_regression":
        return Pipeline(
            [("scale", StandardScaler()), ("logreg", LogisticRegression(C=1.0, max_iter=2000))]
        )
    raise ValueError(f"unknown model kind {kind!r}")


def _cast_bool_attributes(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, list) and any(isinstance(v, bool | np.bool_) for v in value):
        return [int(v) if isinstance(v, bool | np.bool_) else v for v in value]
    return value


def _convert_hist_gradient_boosting(scope: Any, operator: Any, container: Any) -> None:
    """skl2onnx's own HistGradientBoosting converter, with boolean attributes cast to int.

    skl2onnx 1.20 writes Python ``False`` into ``nodes_missing_value_tracks_true`` for
    leaves, which onnx >= 1.2x rejects ("Expected an int, got a boolean"). Patching this one
    container instance for this one call leaves every other conversion untouched.
    """
    original: Callable[..., Any] = container.add_node

    def add_node(*args: Any, **attrs: Any) -> Any:
        return original(*args, **{k: _cast_bool_attributes(v) for k, v in attrs.items()})

    container.add_node = add_node
    try:
        convert_sklearn_random_forest_classifier(scope, operator, container)
    finally:
        del container.add_node  # back to the class's method


def export_onnx(estimator: Any, n_features: int) -> bytes:
    """Serialized ONNX of a fitted binary classifier: float32 ``input`` [None, F] -> probabilities.

    The output is a plain (n, 2) probability tensor (zipmap disabled).
    """
    if not is_classifier(estimator):
        raise TrainingError(f"expected a fitted classifier, got {type(estimator).__name__}")
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    try:
        onx = convert_sklearn(
            estimator,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            target_opset=TARGET_OPSET,
            options={type(final): {"zipmap": False}},
            custom_conversion_functions={
                HistGradientBoostingClassifier: _convert_hist_gradient_boosting
            },
            custom_shape_calculators={
                HistGradientBoostingClassifier: calculate_linear_classifier_output_shapes
            },
        )
    # skl2onnx signals problems with all of these (NameError: an option it does not know).
    except (RuntimeError, ValueError, TypeError, NameError, NotImplementedError) as exc:
        raise TrainingError(f"ONNX export of {type(estimator).__name__} failed: {exc}") from exc
    return bytes(onx.SerializeToString())


def _split(
    X: np.ndarray, y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = max(1, round(len(X) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]


def data_hash(X: np.ndarray, y: np.ndarray) -> str:
    """sha256 hex of the training arrays (shapes, dtypes and bytes of X float32 and y int64)."""
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    y64 = np.ascontiguousarray(y, dtype=np.int64)
    digest = hashlib.sha256(f"X{X32.shape}float32;y{y64.shape}int64;".encode())
    digest.update(X32.tobytes())
    digest.update(y64.tobytes())
    return digest.hexdigest()


def _short(value: float) -> float:
    # The shortest decimal that round-trips as float32: 41.83, not 41.83000183105469.
    return float(str(np.float32(value)))


def _write_version_dir(
    model_dir: Path, version: str, onnx_bytes: bytes, manifest: Manifest
) -> Path:
    """Build the version in a hidden temp dir, then rename it into place.

    Readers (the registry ignores dot-names) see either the old version or the whole new one.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=f".{version}.new-"))
    final = model_dir / version
    try:
        (staging / MODEL_FILE).write_bytes(onnx_bytes)
        manifest.write(staging / MANIFEST_FILE)
        # mkdtemp/mkstemp create owner-only files; workers may run as another user.
        staging.chmod(0o755)
        for file in (MODEL_FILE, MANIFEST_FILE):
            (staging / file).chmod(0o644)
        retired = None
        if final.exists():
            retired = model_dir / f".{version}.old-{uuid.uuid4().hex}"
            os.rename(final, retired)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    return final


def train_version(
    models_dir: Path,
    name: str,
    version: str,
    X: np.ndarray,
    y: np.ndarray,
    kind: ModelKind,
    seed: int,
    *,
    feature_names: Sequence[str] = FEATURE_NAMES,
    profile_features: Sequence[str] = PROFILE_FEATURES,
    test_fraction: float = 0.25,
    threshold: float = 0.5,
) -> Manifest:
    """Fit, export, verify and register one version from X float32 (n, F) and y 0/1 (n,).

    Deterministic for a given (X, y, kind, seed); raises TrainingError if ONNX and sklearn
    disagree by more than PARITY_TOLERANCE on held-out rows.
    """
    if X.ndim != 2 or X.shape[1] != len(feature_names) or len(y) != len(X):
        raise ValueError(
            f"X {X.shape} / y {np.shape(y)} do not match {len(feature_names)} features"
        )
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    X_train, X_test, y_train, y_test = _split(X, y, test_fraction, seed)
    if len(np.unique(y_train)) != 2 or len(np.unique(y_test)) != 2:
        raise TrainingError("both classes must occur in the training and the test rows")

    started = time.perf_counter()
    estimator = _build_estimator(kind, seed)
    estimator.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - started
    onnx_bytes = export_onnx(estimator, X.shape[1])
    p_onnx, parity = _served_probabilities(onnx_bytes, estimator, X_test, f"{name} v{version}")

    rng = np.random.default_rng(seed)
    sample = X_train[rng.choice(len(X_train), min(REFERENCE_SIZE, len(X_train)), replace=False)]
    medians = np.median(X_train, axis=0)
    manifest = Manifest(
        name=name,
        version=version,
        algorithm=_ALGORITHMS[kind],
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        features=tuple(
            FeatureSpec(
                name=feature,
                default=_short(medians[j]),
                source="profile" if feature in profile_features else "request",
            )
            for j, feature in enumerate(feature_names)
        ),
        input_name=INPUT_NAME,
        output=OutputSpec(meaning="probability of default", threshold=threshold, positive_label=1),
        metrics={
            **_held_out_metrics(y_test, p_onnx, threshold),
            "n_train": len(X_train),
            "n_test": len(X_test),
        },
        onnx_parity_max_abs_diff=parity,
        data_hash=data_hash(X_train, y_train),
        reference={f: tuple(_short(v) for v in sample[:, j]) for j, f in enumerate(feature_names)},
        training={"seed": seed, "n_rows": len(X), "kind": kind},
    )
    path = _write_version_dir(Path(models_dir) / name, version, onnx_bytes, manifest)
    log.info(
        "trained %s v%s (%s) in %.2f s: auc %.4f parity %.2g -> %s",
        name, version, kind, fit_seconds, manifest.metrics["roc_auc"], parity, path,
    )  # fmt: skip
    return manifest


def _served_probabilities(
    onnx_bytes: bytes, estimator: Any, X_test: np.ndarray, what: str
) -> tuple[np.ndarray, float]:
    """P(positive) of the held-out rows through the engine that will serve the artefact,
    and its largest difference from scikit-learn's; TrainingError beyond the tolerance."""
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / MODEL_FILE
        onnx_path.write_bytes(onnx_bytes)
        p_onnx = OnnxModel(onnx_path).predict_proba(X_test).astype(np.float64)
    p_sklearn = estimator.predict_proba(X_test)[:, 1]
    parity = float(np.max(np.abs(p_onnx - p_sklearn)))
    if not parity < PARITY_TOLERANCE:
        raise TrainingError(f"{what}: ONNX differs from sklearn by {parity:.3g}")
    return p_onnx, parity


def _held_out_metrics(y_test: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """The manifest's quality figures on the held-out rows."""
    return {
        "roc_auc": float(roc_auc_score(y_test, p)),
        "accuracy": float(accuracy_score(y_test, p >= threshold)),
        "log_loss": float(log_loss(y_test, np.clip(p, 1e-7, 1 - 1e-7))),
        "brier": float(brier_score_loss(y_test, p)),
        "positive_rate": float(y_test.mean()),
    }


def train_demo_models(models_dir: Path, seed: int = 7, n_rows: int = 40_000) -> list[Path]:
    """Train ``credit-risk`` v1 (champion, gradient boosting) and v2 (challenger, logistic).

    Returns the version directories. Same seed and n_rows give the same metrics and data_hash.
    """
    X, y = make_dataset(n_rows, seed)
    paths = []
    for version, kind in DEMO_VERSIONS.items():
        manifest = train_version(Path(models_dir), DEMO_MODEL_NAME, version, X, y, kind, seed)
        paths.append(Path(models_dir) / manifest.name / manifest.version)
    return paths


def ensure_demo_models(models_dir: Path, seed: int = 7, n_rows: int = 40_000) -> bool:
    """Train the demo models unless every demo version is present; whether it trained."""
    if demo_models_present(models_dir):
        return False
    train_demo_models(models_dir, seed=seed, n_rows=n_rows)
    return True
