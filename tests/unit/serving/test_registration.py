"""register_version: a good folder registers and serves; each bad one is refused, saying why,
with nothing left in models_dir. Plus the ``phoenix-stream registry`` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from phoenix_stream.exceptions import ModelLoadError
from phoenix_stream.serving import registration
from phoenix_stream.serving.manifest import MANIFEST_FILE, MODEL_FILE, Manifest
from phoenix_stream.serving.registration import (
    RegistrationError,
    register_version,
    validate_version,
)
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.tools.worker_process import free_port
from phoenix_stream.training.datagen import FEATURE_NAMES, make_dataset
from phoenix_stream.training.train import DEMO_MODEL_NAME, ensure_demo_models

NAME = DEMO_MODEL_NAME
F = len(FEATURE_NAMES)


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo registry (versions 1 and 2), trained once on few rows (fast)."""
    models = tmp_path_factory.mktemp("demo-models")
    assert ensure_demo_models(models, n_rows=3000)
    return models


@pytest.fixture
def source(demo_models: Path, tmp_path: Path) -> Path:
    """A private copy of demo version 2, to register or to break."""
    return Path(shutil.copytree(demo_models / NAME / "2", tmp_path / "candidate"))


@pytest.fixture
def models_dir(demo_models: Path, tmp_path: Path) -> Path:
    """A registry holding demo version 1 only."""
    target = tmp_path / "registry" / NAME / "1"
    shutil.copytree(demo_models / NAME / "1", target)
    return tmp_path / "registry"


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root (hidden ones too) -> file bytes, None for directories."""
    found: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            found[os.path.relpath(Path(folder, d), root)] = None
        for f in files:
            found[os.path.relpath(Path(folder, f), root)] = Path(folder, f).read_bytes()
    return found


def edit_manifest(folder: Path, mutate: Callable[[dict[str, Any]], Any]) -> None:
    path = folder / MANIFEST_FILE
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))


def tiny_onnx(
    n_features: int = F,
    *,
    input_name: str = "input",
    elem_type: int = TensorProto.FLOAT,
    batch: str | int = "N",
    width: str | int | None = None,
    columns: int = 2,
    poison: bool = False,
    probabilities: bool = True,
    extra_input: bool = False,
) -> bytes:
    """A small valid ONNX classifier: sigmoid(X @ w) as [1 - p, p], with one thing changed.

    ``poison`` takes log(p - 2), NaN for every row; ``probabilities=False`` outputs int64
    labels only.
    """
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    x = helper.make_tensor_value_info(
        input_name, elem_type, [batch, n_features if width is None else width]
    )
    weights = numpy_helper.from_array(np.full((n_features, 1), 0.01, dtype=dtype), "w")
    consts = [
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"),
    ]
    nodes = [helper.make_node("MatMul", [input_name, "w"], ["z_raw"])]
    nodes.append(helper.make_node("Cast", ["z_raw"], ["z"], to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Sigmoid", ["z"], ["p_clean"]))
    p = "p_clean"
    if poison:
        nodes.append(helper.make_node("Sub", ["p_clean", "two"], ["p_neg"]))
        nodes.append(helper.make_node("Log", ["p_neg"], ["p_nan"]))
        p = "p_nan"
    nodes.append(helper.make_node("Sub", ["one", p], ["q"]))
    inputs = [x]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [batch, 1]))
        nodes.append(helper.make_node("Mul", [p, "mask"], ["p_masked"]))
        p = "p_masked"
    if probabilities:
        columns_in = ["q", p, *[p] * (columns - 2)]
        nodes.append(helper.make_node("Concat", columns_in, ["probabilities"], axis=1))
        out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, columns])
    else:
        nodes.append(helper.make_node("Greater", [p, "half"], ["positive"]))
        nodes.append(helper.make_node("Cast", ["positive"], ["label"], to=TensorProto.INT64))
        out = helper.make_tensor_value_info("label", TensorProto.INT64, [batch, 1])
    graph = helper.make_graph(nodes, "tiny", inputs, [out], [weights, *consts])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # every onnxruntime >= 1.18 reads it
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def test_a_good_folder_registers_and_serves(
    demo_models: Path, source: Path, models_dir: Path
) -> None:
    manifest = register_version(source, models_dir)
    assert manifest == Manifest.from_file(source / MANIFEST_FILE)
    assert (manifest.name, manifest.version) == (NAME, "2")
    assert set(manifest.to_dict()) == set(MANIFEST_KEYS)  # the property test covers them all
    registry = ModelRegistry(models_dir)
    assert registry.versions(NAME) == ["1", "2"]
    loaded = registry.load(NAME, "2")
    assert loaded.manifest == manifest
    assert sorted(os.listdir(models_dir / NAME / "2")) == [MANIFEST_FILE, MODEL_FILE]
    for file in (MODEL_FILE, MANIFEST_FILE):  # byte for byte what was validated
        assert (models_dir / NAME / "2" / file).read_bytes() == (source / file).read_bytes()
    X, _ = make_dataset(50, seed=11)
    proba = loaded.predict_proba(X)
    assert proba.shape == (50,) and np.all((proba >= 0) & (proba <= 1))
    original = ModelRegistry(demo_models).load(NAME, "2").predict_proba(X)
    np.testing.assert_array_equal(proba, original)
    assert not [p for p in os.listdir(models_dir) if p.startswith(".")]  # no staging left


def test_a_tiny_hand_built_model_registers(source: Path, models_dir: Path) -> None:
    # The control for the refusals below: the builder itself makes servable models.
    (source / MODEL_FILE).write_bytes(tiny_onnx())
    edit_manifest(source, lambda d: d.update(version="7"))
    register_version(source, models_dir)
    assert ModelRegistry(models_dir).load(NAME, "7").engine.n_features == F


def test_name_and_version_must_match_the_manifest(source: Path, models_dir: Path) -> None:
    before = snapshot(models_dir)
    with pytest.raises(RegistrationError, match="version '9' was asked for, but the manifest"):
        register_version(source, models_dir, version="9")
    with pytest.raises(RegistrationError, match="name 'fraud' was asked for"):
        register_version(source, models_dir, name="fraud")
    assert snapshot(models_dir) == before
    manifest = register_version(source, models_dir, name=NAME, version="2")
    assert manifest.version == "2"


def test_an_existing_version_is_never_overwritten(source: Path, models_dir: Path) -> None:
    edit_manifest(source, lambda d: d.update(version="1"))
    before = snapshot(models_dir)
    with pytest.raises(RegistrationError, match="already exists: versions are immutable"):
        register_version(source, models_dir)
    assert snapshot(models_dir) == before


def test_a_version_that_appears_during_the_copy_is_not_overwritten(
    source: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another registration of the same version finishes between the check and the rename.
    real_write_file = registration._write_file
    winner = models_dir / NAME / "2"

    def write_then_race(path: Path, data: bytes) -> None:
        real_write_file(path, data)
        if path.name == MANIFEST_FILE:
            winner.mkdir(parents=True)
            (winner / "other.txt").write_text("first")

    monkeypatch.setattr(registration, "_write_file", write_then_race)
    with pytest.raises(RegistrationError, match="already exists"):
        register_version(source, models_dir)
    assert os.listdir(winner) == ["other.txt"]
    assert not [p for p in os.listdir(models_dir) if p.startswith(".")]


def test_a_failed_copy_leaves_nothing(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models_dir = tmp_path / "fresh"
    models_dir.mkdir()

    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", no_rename)
    with pytest.raises(RegistrationError, match="No space left on device") as info:
        register_version(source, models_dir)
    assert isinstance(info.value.__cause__, OSError)
    assert snapshot(models_dir) == {}  # neither the staging dir nor an empty <name> folder


def _drop_reference(feature: str) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d["reference"].pop(feature)


def _cut_reference(rows: int) -> Callable[[dict[str, Any]], Any]:
    def cut(d: dict[str, Any]) -> None:
        d["reference"] = {k: v[:rows] for k, v in d["reference"].items()}

    return cut


def _set_reference(feature: str, row: int, value: float) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d["reference"][feature].__setitem__(row, value)


def _add_feature(name: str) -> Callable[[dict[str, Any]], Any]:
    def add(d: dict[str, Any]) -> None:
        d["features"].append({**d["features"][0], "name": name})
        d["reference"][name] = d["reference"][FEATURE_NAMES[0]]

    return add


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d.__setitem__(key, value)


# (ONNX bytes or None to keep the trained model, manifest change or None, expected reason)
REFUSALS: dict[str, tuple[bytes | None, Callable[[dict[str, Any]], Any] | None, str]] = {
    "corrupt ONNX (random bytes)": (
        np.random.default_rng(3).bytes(4096),
        None,
        "ONNX Runtime cannot load it",
    ),
    "empty ONNX file": (b"", None, "ONNX Runtime cannot load it"),
    "fewer ONNX inputs than features": (
        tiny_onnx(F - 1),
        None,
        f"input takes {F - 1} features, the manifest lists {F}",
    ),
    "manifest with an extra feature": (
        None,
        _add_feature("extra"),
        f"input takes {F} features, the manifest lists {F + 1}",
    ),
    "wrong input name": (
        tiny_onnx(input_name="x"),
        None,
        "input is named 'x', manifest input_name is 'input'",
    ),
    "int64 input": (
        tiny_onnx(elem_type=TensorProto.INT64),
        None,
        r"input 'input' is tensor\(int64\), expected tensor\(float\)",
    ),
    "double input": (
        tiny_onnx(elem_type=TensorProto.DOUBLE),
        None,
        r"input 'input' is tensor\(double\), expected tensor\(float\)",
    ),
    "two inputs": (tiny_onnx(extra_input=True), None, "expected exactly 1 input, found 2"),
    "dynamic feature dimension": (
        tiny_onnx(width="F"),
        None,
        f"feature dimension is dynamic \\('F'\\), expected {F}",
    ),
    "fixed batch dimension": (tiny_onnx(batch=1), None, "batch dimension is fixed at 1"),
    "no probability output": (tiny_onnx(probabilities=False), None, "no float probability output"),
    "three probability columns": (
        tiny_onnx(columns=3),
        None,
        "'probabilities' has 3 columns, expected 2",
    ),
    "NaN on the reference sample": (
        tiny_onnx(poison=True),
        None,
        "non-finite probabilities \\(NaN or inf\\) on the reference sample, first at row 0",
    ),
    "reference missing a feature": (
        None,
        _drop_reference(FEATURE_NAMES[3]),
        f"no sample for features \\['{FEATURE_NAMES[3]}'\\]",
    ),
    "short reference": (None, _cut_reference(100), "100 rows, at least 500 required"),
    "no reference at all": (None, _set("reference", {}), "no sample for features"),
    "reference with a NaN": (
        None,
        _set_reference(FEATURE_NAMES[1], 5, float("nan")),
        f"non-finite values \\(NaN or inf\\) in \\['{FEATURE_NAMES[1]}'\\]",
    ),
    "references of unequal length": (
        None,
        lambda d: d["reference"][FEATURE_NAMES[2]].pop(),
        "samples differ in length",
    ),
    "invalid manifest field": (
        None,
        lambda d: d["features"][0].__setitem__("dtype", "float64"),
        r"features\[0\].dtype: only 'float32'",
    ),
    "manifest name escaping models_dir": (
        None,
        _set("name", "../escape"),
        "manifest name '../escape' is not a valid name",
    ),
    "manifest version with a separator": (
        None,
        _set("version", "2/3"),
        "manifest version '2/3' is not a valid version",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_bad_folder_is_refused_saying_why(case: str, source: Path, models_dir: Path) -> None:
    onnx_bytes, mutate, reason = REFUSALS[case]
    if onnx_bytes is not None:
        (source / MODEL_FILE).write_bytes(onnx_bytes)
    if mutate is not None:
        edit_manifest(source, mutate)
    before = snapshot(models_dir)
    with pytest.raises(RegistrationError, match=reason):
        validate_version(source)
    with pytest.raises(ModelLoadError, match=reason):  # what callers of the registry catch
        register_version(source, models_dir)
    assert snapshot(models_dir) == before
    assert not (models_dir.parent / "escape").exists()


def test_the_reference_minimum_is_a_parameter(source: Path, models_dir: Path) -> None:
    edit_manifest(source, _cut_reference(100))
    with pytest.raises(RegistrationError, match="at least 500 required"):
        register_version(source, models_dir)
    assert register_version(source, models_dir, min_reference_rows=100).version == "2"


@pytest.mark.parametrize(
    ("remove", "reason"),
    [(MODEL_FILE, "missing model.onnx"), (MANIFEST_FILE, "missing manifest.json")],
)
def test_a_folder_without_its_files_is_refused(
    source: Path, models_dir: Path, remove: str, reason: str
) -> None:
    (source / remove).unlink()
    with pytest.raises(RegistrationError, match=reason):
        register_version(source, models_dir)
    with pytest.raises(RegistrationError, match="not a directory"):
        register_version(source / "absent", models_dir)


def test_a_manifest_that_is_not_json_is_refused(source: Path, models_dir: Path) -> None:
    (source / MANIFEST_FILE).write_bytes(b"\xff{not json")
    with pytest.raises(RegistrationError, match="not valid JSON") as info:
        register_version(source, models_dir)
    assert info.value.__cause__ is not None


MANIFEST_KEYS = (
    "name", "version", "algorithm", "created_at", "features", "input_name", "output",
    "metrics", "onnx_parity_max_abs_diff", "data_hash", "reference", "training",
)  # fmt: skip
# Values a hand-edited manifest field might hold.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(MANIFEST_KEYS), value=_JSON)
def test_any_manifest_field_value_registers_or_is_refused_cleanly(
    demo_models: Path, key: str, value: Any
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(demo_models / NAME / "2", Path(tmp) / "candidate"))
        edit_manifest(folder, _set(key, value))
        models_dir = Path(tmp) / "registry"
        models_dir.mkdir()
        try:
            manifest = register_version(folder, models_dir)
        except RegistrationError as exc:
            assert str(exc)
            assert snapshot(models_dir) == {}
        else:
            assert ModelRegistry(models_dir).load(manifest.name, manifest.version)


# ---- the ``phoenix-stream registry`` command -------------------------------------------------


def run_registry(*args: str, models_dir: Path, tmp_path: Path, **env: str) -> Any:
    command = Path(sys.executable).parent / "phoenix-stream"
    return subprocess.run(
        [str(command), "registry", *args],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PHOENIX_MODELS_DIR": str(models_dir),
            "PHOENIX_STATE_DIR": str(tmp_path / "state"),
            # no worker there: the roles come from the PHOENIX_* defaults below
            "PHOENIX_ADMIN_URL": f"http://127.0.0.1:{free_port()}",
            **env,
        },
        timeout=120,
    )


def test_cli_lists_versions_with_their_roles(demo_models: Path, tmp_path: Path) -> None:
    done = run_registry(
        "list",
        models_dir=demo_models,
        tmp_path=tmp_path,
        PHOENIX_CHAMPION_VERSION="1",
        PHOENIX_CHALLENGER_VERSION="2",
        PHOENIX_STRATEGY="canary",
    )
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[:4] == ["MODEL", "VERSION", "ROLE", "CREATED_AT"]
    assert len(rows) == 2
    for row, version, role in zip(rows, ("1", "2"), ("champion", "challenger"), strict=True):
        manifest = Manifest.from_file(demo_models / NAME / version / MANIFEST_FILE)
        assert row.split()[:3] == [NAME, version, role]
        assert manifest.created_at in row
        assert f"{manifest.metrics['accuracy']:.4f}" in row
        assert f"{manifest.metrics['roc_auc']:.4f}" in row
        assert row.endswith(manifest.algorithm)
    assert "(canary)" in rows[1]
    assert done.stderr.startswith("note: no worker answered at http://127.0.0.1:")


def test_cli_list_notes_a_deployed_version_that_is_missing(
    demo_models: Path, tmp_path: Path
) -> None:
    done = run_registry(
        "list",
        models_dir=demo_models,
        tmp_path=tmp_path,
        PHOENIX_CHAMPION_VERSION="5",
        PHOENIX_CHALLENGER_VERSION="1",
        PHOENIX_STRATEGY="shadow",
    )
    assert done.returncode == 0, done.stderr
    _, first, second, note = done.stdout.splitlines()
    assert first.split()[:4] == [NAME, "1", "challenger", "(shadow)"]
    assert second.split()[:3] == [NAME, "2", "-"]
    assert note == f"note: {NAME} champion version 5 is not registered"


def test_cli_registers_and_refuses(demo_models: Path, source: Path, tmp_path: Path) -> None:
    models_dir = tmp_path / "registry"
    done = run_registry("register", str(source), models_dir=models_dir, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"registered {NAME} version 2 in {models_dir}"
    assert ModelRegistry(models_dir).versions(NAME) == ["2"]

    (source / MODEL_FILE).write_bytes(tiny_onnx(input_name="x"))
    edit_manifest(source, lambda d: d.update(version="3"))
    before = snapshot(models_dir)
    done = run_registry("register", str(source), models_dir=models_dir, tmp_path=tmp_path)
    assert done.returncode == 1
    last = done.stderr.splitlines()[-1]
    assert last.startswith("error: ") and "input is named 'x'" in last, done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(models_dir) == before


def test_cli_register_without_a_path_says_so(tmp_path: Path) -> None:
    done = run_registry("register", models_dir=tmp_path / "registry", tmp_path=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: register needs the PATH of a version folder"
    assert not (tmp_path / "registry").exists()
