"""OnnxModel: parity with scikit-learn, input checks and error translation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from phoenix_stream.exceptions import InferenceError, ModelLoadError, TrainingError
from phoenix_stream.serving.engine import OnnxModel
from phoenix_stream.training.datagen import FEATURE_NAMES, make_dataset
from phoenix_stream.training.train import export_onnx

N_FEATURES = len(FEATURE_NAMES)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_dataset(2000, seed=21)


def _export(estimator: object, path: Path) -> Path:
    path.write_bytes(export_onnx(estimator, N_FEATURES))
    return path


@pytest.mark.parametrize(
    "estimator",
    [
        Pipeline([("scale", StandardScaler()), ("logreg", LogisticRegression(max_iter=2000))]),
        # Goes through the boolean-attribute fix of the skl2onnx converter.
        HistGradientBoostingClassifier(max_iter=30, early_stopping=False, random_state=0),
    ],
    ids=["logreg", "hist_gb"],
)
def test_predict_proba_matches_sklearn(
    estimator: object, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, y = data
    estimator.fit(X[:1500], y[:1500])  # type: ignore[attr-defined]
    model = OnnxModel(_export(estimator, tmp_path / "m.onnx"))
    got = model.predict_proba(X[1500:])
    want = estimator.predict_proba(X[1500:])[:, 1]  # type: ignore[attr-defined]
    assert got.dtype == np.float32 and got.shape == (500,)
    assert np.max(np.abs(got - want)) < 1e-5
    assert model.n_features == N_FEATURES and model.input_name == "input"


@pytest.fixture(scope="module")
def logreg_path(
    data: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    X, y = data
    estimator = LogisticRegression(max_iter=2000).fit(X, y)
    return _export(estimator, tmp_path_factory.mktemp("engine") / "logreg.onnx")


def test_batch_of_one_equals_row_of_batch(logreg_path: Path, data: tuple[np.ndarray, ...]) -> None:
    model = OnnxModel(logreg_path)
    X = data[0][:64]
    batch = model.predict_proba(X)
    assert model.predict_proba(X[10:11])[0] == pytest.approx(batch[10], abs=1e-7)


def test_float64_input_is_accepted(logreg_path: Path, data: tuple[np.ndarray, ...]) -> None:
    model = OnnxModel(logreg_path)
    X = data[0][:10]
    np.testing.assert_array_equal(model.predict_proba(X.astype(np.float64)), model.predict_proba(X))


def test_empty_batch_gives_empty_result(logreg_path: Path) -> None:
    out = OnnxModel(logreg_path).predict_proba(np.empty((0, N_FEATURES), dtype=np.float32))
    assert out.shape == (0,) and out.dtype == np.float32


@pytest.mark.parametrize(
    "shape", [(4, N_FEATURES - 1), (4, N_FEATURES + 1), (N_FEATURES,), (2, 2, N_FEATURES)]
)
def test_wrong_shape_raises_inference_error(logreg_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(InferenceError, match="shape"):
        OnnxModel(logreg_path).predict_proba(np.zeros(shape, dtype=np.float32))


def test_missing_file_raises_model_load_error_with_cause(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot load") as info:
        OnnxModel(tmp_path / "absent.onnx")
    assert info.value.__cause__ is not None


def test_garbage_file_raises_model_load_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelLoadError) as info:
        OnnxModel(path)
    assert info.value.__cause__ is not None


def test_model_without_probability_columns_is_rejected(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, y = data
    # A regressor's (n, 1) output has no positive-class column.
    regressor = LinearRegression().fit(X, y.astype(np.float64))
    onx = convert_sklearn(regressor, initial_types=[("input", FloatTensorType([None, N_FEATURES]))])
    path = tmp_path / "reg.onnx"
    path.write_bytes(onx.SerializeToString())
    with pytest.raises(ModelLoadError, match="positive_column"):
        OnnxModel(path)


def test_export_rejects_a_regressor(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    with pytest.raises(TrainingError, match="classifier"):
        export_onnx(LinearRegression().fit(X, y.astype(np.float64)), N_FEATURES)


def test_threads_must_be_positive(logreg_path: Path) -> None:
    with pytest.raises(ValueError, match="intra_op_threads"):
        OnnxModel(logreg_path, intra_op_threads=0)
