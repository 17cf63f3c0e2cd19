"""Manifest parsing and round trip; ModelRegistry listing, caching and load errors."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix_stream.exceptions import ModelLoadError, UnknownModelError
from phoenix_stream.serving.manifest import (
    MANIFEST_FILE,
    MODEL_FILE,
    FeatureSpec,
    Manifest,
    OutputSpec,
)
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.training.datagen import FEATURE_NAMES, make_dataset
from phoenix_stream.training.train import train_version

NAME = "credit-risk"


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with versions 1, 2 and 10 of a small logistic model (fast to train)."""
    models = tmp_path_factory.mktemp("models")
    X, y = make_dataset(1500, seed=4)
    for version in ("1", "2", "10"):
        train_version(models, NAME, version, X, y, "logistic_regression", seed=4)
    return models


@pytest.fixture
def models_dir(source_dir: Path, tmp_path: Path) -> Path:
    """A private copy, so tests may break files."""
    return Path(shutil.copytree(source_dir, tmp_path / "models"))


def _manifest_dict(models_dir: Path, version: str = "1") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((models_dir / NAME / version / MANIFEST_FILE).read_text())
    return data


def test_manifest_round_trips(models_dir: Path, tmp_path: Path) -> None:
    original = Manifest.from_file(models_dir / NAME / "1" / MANIFEST_FILE)
    original.write(tmp_path / "copy.json")
    again = Manifest.from_file(tmp_path / "copy.json")
    assert again == original
    assert again.to_dict() == _manifest_dict(models_dir)
    assert again.feature_names == FEATURE_NAMES
    assert isinstance(again.metrics["n_train"], int)  # counts stay ints through JSON
    defaults = again.defaults()
    assert defaults.dtype == np.float32 and defaults.shape == (len(FEATURE_NAMES),)


def _drop(key: str) -> Any:
    return lambda d: d.pop(key)


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        for step in path[:-1]:
            d = d[step]
        d[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_drop("features"), "missing field 'features'"),
        (_drop("data_hash"), "missing field 'data_hash'"),
        (_set(("version",), 1), "version: expected"),
        (_set(("features",), []), "features: must not be empty"),
        (_set(("features", 0, "dtype"), "float64"), r"features\[0\].dtype"),
        (_set(("features", 1, "source"), "redis"), r"features\[1\].source"),
        (_set(("features", 2, "default"), "7"), r"features\[2\].default"),
        (_set(("features", 1, "name"), "age"), "duplicate feature names"),
        (_set(("output", "threshold"), 1.5), "output.threshold"),
        (_set(("output", "positive_label"), True), "output.positive_label"),
        (_set(("metrics", "roc_auc"), "high"), "metrics.roc_auc"),
        (_set(("reference", "no_such_feature"), [1.0]), "'no_such_feature' is not a feature"),
        (_set(("reference", "age"), ["x"]), "reference.age"),
        # What json.loads reads but the manifest could not be written back with (found by
        # tests/fuzz: each raised TypeError or OverflowError instead of naming the field).
        (_set(("metrics", "roc_auc"), 2**70), "metrics.roc_auc: an integer must fit"),
        (_set(("features", 2, "default"), 10**400), r"features\[2\].default: an integer"),
        (_set(("reference", "age"), [10**400]), r"non-finite values \(NaN or inf\) in \['age'\]"),
        (
            _set(("reference", "age"), [float("nan")]),
            r"non-finite values \(NaN or inf\) in \['age'\]",
        ),
        (_set(("algorithm",), "\ud800"), "algorithm: must be valid Unicode"),
        (_set(("training", "kind"), float("inf")), "training.kind: must be finite"),
        (_set(("training", "n_rows"), 2**64), "training.n_rows: an integer must fit"),
        (_set(("training", "note"), "\udfff"), "training.note: must be valid Unicode"),
        (_set(("training", "nested"), {"a": 1}), "training.nested: expected text or a number"),
    ],
)
def test_manifest_errors_name_the_field(
    models_dir: Path, tmp_path: Path, mutate: Any, expected: str
) -> None:
    data = _manifest_dict(models_dir)
    mutate(data)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match=expected):
        Manifest.from_file(path)


def test_unreadable_manifest_keeps_the_cause(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as missing:
        Manifest.from_file(tmp_path / "absent.json")
    assert isinstance(missing.value.__cause__, FileNotFoundError)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ModelLoadError) as broken:
        Manifest.from_file(tmp_path / "broken.json")
    assert isinstance(broken.value.__cause__, json.JSONDecodeError)


def test_names_and_numeric_version_order(models_dir: Path) -> None:
    # Half-written or hidden folders are not versions.
    (models_dir / NAME / "11").mkdir()
    (models_dir / NAME / ".12.new-abc").mkdir()
    (models_dir / "empty-model").mkdir()
    registry = ModelRegistry(models_dir)
    assert registry.names() == [NAME]
    assert registry.versions(NAME) == ["1", "2", "10"]
    assert registry.latest(NAME) == "10"
    assert registry.versions("nope") == [] and registry.versions("../models") == []
    with pytest.raises(UnknownModelError):
        registry.latest("nope")
    assert ModelRegistry(models_dir / "absent").names() == []


def test_load_is_cached_and_serves(models_dir: Path) -> None:
    registry = ModelRegistry(models_dir)
    model = registry.load(NAME, "2")
    assert registry.load(NAME, "2") is model
    assert model.key == (NAME, "2") and model.path == models_dir / NAME / "2"
    X, _ = make_dataset(20, seed=99)
    proba = model.predict_proba(X)
    assert proba.shape == (20,) and np.all((proba >= 0) & (proba <= 1))
    labels = model.labels(np.array([0.2, 0.5, 0.9], dtype=np.float32))
    np.testing.assert_array_equal(labels, [0, 1, 1])
    assert registry.evict(NAME, "2") and not registry.evict(NAME, "2")
    assert registry.load(NAME, "2") is not model


def test_concurrent_loads_build_one_model(models_dir: Path) -> None:
    registry = ModelRegistry(models_dir)
    results: list[object] = []
    barrier = threading.Barrier(6)

    def load() -> None:
        barrier.wait(timeout=10)
        results.append(registry.load(NAME, "10"))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 6 and all(r is results[0] for r in results)


@pytest.mark.parametrize(("name", "version"), [(NAME, "3"), ("nope", "1"), (NAME, "../1")])
def test_missing_or_invalid_version_raises(models_dir: Path, name: str, version: str) -> None:
    with pytest.raises(ModelLoadError):
        ModelRegistry(models_dir).load(name, version)


def test_missing_version_lists_known_ones(models_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"\['1', '2', '10'\]"):
        ModelRegistry(models_dir).load(NAME, "3")


def test_failed_load_is_not_cached(models_dir: Path) -> None:
    onnx_path = models_dir / NAME / "1" / MODEL_FILE
    good = onnx_path.read_bytes()
    onnx_path.write_bytes(b"corrupt")
    registry = ModelRegistry(models_dir)
    with pytest.raises(ModelLoadError) as info:
        registry.load(NAME, "1")
    assert info.value.__cause__ is not None
    onnx_path.write_bytes(good)
    assert registry.load(NAME, "1").key == (NAME, "1")


def test_manifest_that_disagrees_with_its_folder_is_rejected(models_dir: Path) -> None:
    shutil.copytree(models_dir / NAME / "1", models_dir / NAME / "7")
    with pytest.raises(ModelLoadError, match="lives at"):
        ModelRegistry(models_dir).load(NAME, "7")


def test_manifest_that_disagrees_with_the_onnx_input_is_rejected(models_dir: Path) -> None:
    path = models_dir / NAME / "1" / MANIFEST_FILE
    data = _manifest_dict(models_dir)
    data["features"] = data["features"][:-1]
    del data["reference"][FEATURE_NAMES[-1]]
    path.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="manifest lists 9"):
        ModelRegistry(models_dir).load(NAME, "1")
    data = _manifest_dict(models_dir, "2")
    data["input_name"] = "features"
    (models_dir / NAME / "2" / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="manifest says 'features'"):
        ModelRegistry(models_dir).load(NAME, "2")


def test_reference_rows_are_the_sample_in_feature_order(models_dir: Path) -> None:
    manifest = Manifest.from_file(models_dir / NAME / "1" / MANIFEST_FILE)
    rows = manifest.reference_rows()
    sample = len(manifest.reference[FEATURE_NAMES[0]])  # min(REFERENCE_SIZE, training rows)
    assert rows.dtype == np.float32 and rows.shape == (sample, len(FEATURE_NAMES))
    assert rows.flags.c_contiguous  # what ONNX Runtime takes without a copy
    for j, feature in enumerate(FEATURE_NAMES):
        np.testing.assert_array_equal(
            rows[:, j], np.array(manifest.reference[feature], dtype=np.float32)
        )


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.dictionaries(
        st.sampled_from(FEATURE_NAMES[:3]), st.integers(min_value=0, max_value=4), max_size=3
    )
)
def test_reference_rows_need_every_feature_with_equal_sizes(sizes: dict[str, int]) -> None:
    features = tuple(FeatureSpec(name, 0.0, "request") for name in FEATURE_NAMES[:3])
    reference = {name: tuple(float(i) for i in range(n)) for name, n in sizes.items()}
    manifest = Manifest(
        name=NAME, version="1", algorithm="a", created_at="2024-01-01T00:00:00+00:00",
        features=features, input_name="input",
        output=OutputSpec(meaning="m", threshold=0.5, positive_label=1),
        metrics={}, onnx_parity_max_abs_diff=0.0, data_hash="", reference=reference, training={},
    )  # fmt: skip
    if len(sizes) < 3:
        with pytest.raises(ModelLoadError, match="no sample for features"):
            manifest.reference_rows()
    elif len(set(sizes.values())) > 1:
        with pytest.raises(ModelLoadError, match="samples differ in length"):
            manifest.reference_rows()
    else:
        rows = manifest.reference_rows()
        n = next(iter(sizes.values()))
        assert rows.shape == (n, 3)
        np.testing.assert_array_equal(rows, np.tile(np.arange(n, dtype=np.float32), (3, 1)).T)
