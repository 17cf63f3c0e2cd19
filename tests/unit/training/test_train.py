"""Demo model training: determinism, quality, manifest contents and on-demand training."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phoenix_stream.exceptions import TrainingError
from phoenix_stream.serving.manifest import MANIFEST_FILE, Manifest
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.training.datagen import FEATURE_NAMES, PROFILE_FEATURES, make_dataset
from phoenix_stream.training.demo_models import demo_models_present
from phoenix_stream.training.train import (
    DEMO_MODEL_NAME,
    REFERENCE_SIZE,
    ensure_demo_models,
    train_demo_models,
    train_version,
)

ROWS = 3000  # small: the demo default is 40,000


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("demo")
    train_demo_models(models, seed=3, n_rows=ROWS)
    return models


def _manifest(models: Path, version: str) -> Manifest:
    return Manifest.from_file(models / DEMO_MODEL_NAME / version / MANIFEST_FILE)


def test_trains_champion_and_challenger(trained: Path) -> None:
    assert ModelRegistry(trained).versions(DEMO_MODEL_NAME) == ["1", "2"]
    assert "HistGradientBoosting" in _manifest(trained, "1").algorithm
    assert "LogisticRegression" in _manifest(trained, "2").algorithm


def test_same_seed_gives_same_models(trained: Path, tmp_path: Path) -> None:
    paths = train_demo_models(tmp_path, seed=3, n_rows=ROWS)
    assert paths == [tmp_path / DEMO_MODEL_NAME / "1", tmp_path / DEMO_MODEL_NAME / "2"]
    X, _ = make_dataset(200, seed=123)
    for version in ("1", "2"):
        a, b = _manifest(trained, version), _manifest(tmp_path, version)
        assert a.metrics == b.metrics
        assert a.data_hash == b.data_hash
        assert a.reference == b.reference and a.features == b.features
        proba_a = ModelRegistry(trained).load(DEMO_MODEL_NAME, version).predict_proba(X)
        proba_b = ModelRegistry(tmp_path).load(DEMO_MODEL_NAME, version).predict_proba(X)
        np.testing.assert_array_equal(proba_a, proba_b)


def test_other_seed_gives_other_data(trained: Path, tmp_path: Path) -> None:
    X, y = make_dataset(ROWS, seed=4)
    other = train_version(tmp_path, "m", "1", X, y, "logistic_regression", seed=4)
    assert other.data_hash != _manifest(trained, "2").data_hash


def test_champion_beats_chance_on_held_out_rows(trained: Path) -> None:
    metrics = _manifest(trained, "1").metrics
    assert metrics["roc_auc"] > 0.7  # chance is 0.5; the rule's own AUC is about 0.83
    assert metrics["n_train"] + metrics["n_test"] == ROWS
    assert 0 < metrics["brier"] < 0.2 and 0 < metrics["log_loss"] < 0.6
    assert _manifest(trained, "2").metrics["roc_auc"] > 0.7


def test_served_model_scores_fresh_data(trained: Path) -> None:
    from sklearn.metrics import roc_auc_score

    X, y = make_dataset(4000, seed=77)
    proba = ModelRegistry(trained).load(DEMO_MODEL_NAME, "1").predict_proba(X)
    assert roc_auc_score(y, proba) > 0.7


def test_manifest_describes_the_model(trained: Path) -> None:
    m = _manifest(trained, "1")
    assert (m.name, m.version, m.input_name) == (DEMO_MODEL_NAME, "1", "input")
    assert m.feature_names == FEATURE_NAMES
    assert all((f.source == "profile") == (f.name in PROFILE_FEATURES) for f in m.features)
    assert m.onnx_parity_max_abs_diff < 1e-4
    assert m.output.meaning == "probability of default" and m.output.positive_label == 1
    assert set(m.reference) == set(FEATURE_NAMES)
    # The reference is REFERENCE_SIZE training rows, or every training row when fewer.
    train_rows = int(m.metrics["n_train"])
    assert {len(v) for v in m.reference.values()} == {min(REFERENCE_SIZE, train_rows)}
    assert m.training["seed"] == 3 and m.training["n_rows"] == ROWS
    # Defaults are training medians: close to the medians of fresh data.
    X, _ = make_dataset(ROWS, seed=3)
    age = FEATURE_NAMES.index("age")
    assert abs(m.features[age].default - float(np.median(X[:, age]))) <= 2.0


def test_ensure_trains_only_when_missing(trained: Path, tmp_path: Path) -> None:
    models = Path(shutil.copytree(trained, tmp_path / "models"))
    before = (models / DEMO_MODEL_NAME / "1" / MANIFEST_FILE).read_bytes()
    assert ensure_demo_models(models, seed=3, n_rows=ROWS) is False
    assert (models / DEMO_MODEL_NAME / "1" / MANIFEST_FILE).read_bytes() == before
    (models / DEMO_MODEL_NAME / "2" / MANIFEST_FILE).unlink()
    assert ensure_demo_models(models, seed=3, n_rows=ROWS) is True
    assert ModelRegistry(models).versions(DEMO_MODEL_NAME) == ["1", "2"]
    # Rewriting an existing version leaves no staging or retired folders behind.
    assert sorted(p.name for p in (models / DEMO_MODEL_NAME).iterdir()) == ["1", "2"]


def test_one_class_data_is_refused(tmp_path: Path) -> None:
    X, _ = make_dataset(500, seed=1)
    with pytest.raises(TrainingError, match="both classes"):
        train_version(
            tmp_path, "m", "1", X, np.zeros(500, dtype=np.int64), "logistic_regression", 1
        )
    assert not (tmp_path / "m" / "1").exists()


def test_mismatched_shapes_are_refused(tmp_path: Path) -> None:
    X, y = make_dataset(500, seed=1)
    with pytest.raises(ValueError):
        train_version(tmp_path, "m", "1", X[:, :5], y, "logistic_regression", 1)


def test_demo_models_present_needs_every_demo_version(trained: Path, tmp_path: Path) -> None:
    assert demo_models_present(trained)
    assert not demo_models_present(tmp_path / "empty")
    partial = tmp_path / "partial"
    shutil.copytree(trained / DEMO_MODEL_NAME / "1", partial / DEMO_MODEL_NAME / "1")
    assert not demo_models_present(partial)


def test_train_with_the_models_there_imports_no_training_stack(trained: Path) -> None:
    """What makes ``phoenix-stream train`` answer at once when there is nothing to do."""
    code = (
        "import sys\n"
        "from phoenix_stream.cli import main\n"
        "try:\n"
        f"    main(['train', '--models-dir', {str(trained)!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(sorted(m for m in ('sklearn', 'skl2onnx') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"already present: demo models in {trained}", "[]"]
