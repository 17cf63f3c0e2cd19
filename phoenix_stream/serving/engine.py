"""ONNX Runtime engine: one InferenceSession per model version, probabilities out.

ONNX Runtime's own errors (pybind classes deriving straight from ``Exception``) are
translated here, at the boundary, into ModelLoadError (at load) or InferenceError (at run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from phoenix_stream.exceptions import InferenceError, ModelLoadError

__all__ = ["OnnxModel"]


class OnnxModel:
    """A binary classifier exported to ONNX: float32 (n, F) in, P(positive) float32 (n,) out.

    ``intra_op_threads`` is the thread count of one call; inter-op parallelism stays off
    because the models are small and the worker already runs one call per batch.
    Thread-safe: ONNX Runtime allows concurrent ``run`` calls on one session.
    """

    def __init__(self, path: Path, intra_op_threads: int = 1, positive_column: int = 1) -> None:
        if intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Warnings only: ORT logs every initializer it folds at INFO.
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT's error classes share no base below Exception
            raise ModelLoadError(f"cannot load ONNX model {self.path}: {exc}") from exc

        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"{self.path}: expected 1 input, found {len(inputs)}")
        shape = inputs[0].shape
        if inputs[0].type != "tensor(float)" or len(shape) != 2 or not isinstance(shape[1], int):
            raise ModelLoadError(
                f"{self.path}: input must be float32 [batch, F], got {inputs[0].type} {shape}"
            )
        self.input_name: str = inputs[0].name
        self.n_features: int = shape[1]
        self._output_name, n_columns = self._probability_output()
        if not 0 <= positive_column < n_columns:
            raise ModelLoadError(
                f"{self.path}: positive_column {positive_column} outside {n_columns} columns"
            )
        self._positive_column = positive_column

    def _probability_output(self) -> tuple[str, int]:
        """Name and column count of the (n, classes) float output (zipmap disabled)."""
        for out in self._session.get_outputs():
            if out.type == "tensor(float)" and len(out.shape) == 2:
                # A symbolic class dimension is taken as binary.
                n_columns = out.shape[1] if isinstance(out.shape[1], int) else 2
                return str(out.name), n_columns
        described = [(o.name, o.type, o.shape) for o in self._session.get_outputs()]
        raise ModelLoadError(
            f"{self.path}: no float probability tensor among outputs {described} "
            "(was the model exported with zipmap disabled?)"
        )

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class, float32 (n,), for X of shape (n, F) (float32)."""
        batch = np.ascontiguousarray(X, dtype=np.float32)
        if batch.ndim != 2 or batch.shape[1] != self.n_features:
            raise InferenceError(
                f"{self.path}: input must have shape (n, {self.n_features}), got {batch.shape}"
            )
        if batch.shape[0] == 0:
            return np.empty(0, dtype=np.float32)
        try:
            (proba,) = self._session.run([self._output_name], {self.input_name: batch})
        except Exception as exc:  # ORT's error classes share no base below Exception
            raise InferenceError(f"{self.path}: ONNX Runtime failed: {exc}") from exc
        return np.ascontiguousarray(proba[:, self._positive_column], dtype=np.float32)

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, n_features={self.n_features})"
