"""A model version's manifest: ``manifest.json`` beside its ``model.onnx``.

It names the model's features (in input order, with defaults and sources), its output
(positive label, threshold), its training facts and a reference sample for drift. Parsing
is strict: anything the writer could not write back the same way is a ModelLoadError
naming the field.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from phoenix_stream.exceptions import ModelLoadError
from phoenix_stream.messages.validation import INT64_MIN, UINT64_MAX

__all__ = ["MANIFEST_FILE", "MODEL_FILE", "FeatureSpec", "Manifest", "OutputSpec"]

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
FeatureSource = Literal["profile", "request"]


def _field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """data[key] checked against kind; ModelLoadError naming ``where.key`` otherwise."""
    if key not in data:
        raise ModelLoadError(f"{where}: missing field {key!r}")
    value = data[key]
    # bool is an int subclass; a flag where a number belongs is a broken manifest.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ModelLoadError(f"{where}.{key}: expected {kind}, got a boolean")
    if not isinstance(value, kind):
        raise ModelLoadError(f"{where}.{key}: expected {kind}, got {type(value).__name__}")
    if isinstance(value, str) and not _encodable(value):
        raise ModelLoadError(f"{where}.{key}: must be valid Unicode text")
    return value


def _number(data: Mapping[str, Any], key: str, where: str) -> float:
    """A finite int or float field (ints stay ints, so counts round-trip unchanged)."""
    value: float = _field(data, key, (int, float), where)
    problem = _unwritable_number(value)
    if problem is not None:
        raise ModelLoadError(f"{where}.{key}: {problem}")
    return value


_FLOAT_MAX = sys.float_info.max


def _unwritable_number(value: float) -> str | None:
    """Why the manifest could not be written back with ``value`` as read, or None.

    ``json.loads`` reads ``Infinity`` and integers of any size; JSON cannot write the
    first, orjson no integer beyond 64 bits, and ``float()`` of a 400-digit one raises.
    """
    if isinstance(value, int):
        return None if INT64_MIN <= value <= UINT64_MAX else "an integer must fit in 64 bits"
    return None if math.isfinite(value) else f"must be finite, got {value}"


def _training(data: Mapping[Any, Any], where: str) -> dict[str, int | float | str]:
    """The ``training`` record: names to text, finite numbers or 64-bit integers only, so
    that the manifest written back is the manifest read (JSON has no infinity, orjson no
    integer beyond 64 bits, UTF-8 no lone surrogate)."""
    out: dict[str, int | float | str] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not _encodable(key):
            raise ModelLoadError(f"{where}: a key is not valid text")
        if isinstance(value, str):
            if not _encodable(value):
                raise ModelLoadError(f"{where}.{key}: must be valid Unicode text")
        elif not isinstance(value, int | float):  # bool is an int: true/false round-trip
            raise ModelLoadError(
                f"{where}.{key}: expected text or a number, got {type(value).__name__}"
            )
        elif (problem := _unwritable_number(value)) is not None:
            raise ModelLoadError(f"{where}.{key}: {problem}")
        out[key] = value
    return out


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class FeatureSpec:
    """One model input: its name, dtype (always float32), default value and where it comes from."""

    name: str
    default: float
    source: FeatureSource
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, data: Any, where: str) -> FeatureSpec:
        """Parse one ``features[i]`` entry; ModelLoadError on a bad field."""
        if not isinstance(data, Mapping):
            raise ModelLoadError(f"{where}: expected an object")
        dtype = _field(data, "dtype", str, where)
        if dtype != "float32":
            raise ModelLoadError(f"{where}.dtype: only 'float32' is supported, got {dtype!r}")
        source = _field(data, "source", str, where)
        if source not in ("profile", "request"):
            raise ModelLoadError(f"{where}.source: expected 'profile' or 'request', got {source!r}")
        return cls(
            name=_field(data, "name", str, where),
            default=_number(data, "default", where),
            source=cast(FeatureSource, source),
            dtype=dtype,
        )


@dataclass(frozen=True)
class OutputSpec:
    """What the score means and how it becomes a label (score >= threshold); binary 0/1 labels."""

    meaning: str
    threshold: float
    positive_label: int

    @classmethod
    def from_dict(cls, data: Any, where: str) -> OutputSpec:
        """Parse the ``output`` object; ModelLoadError on a bad field."""
        if not isinstance(data, Mapping):
            raise ModelLoadError(f"{where}: expected an object")
        threshold = _number(data, "threshold", where)
        if not 0.0 <= threshold <= 1.0:
            raise ModelLoadError(f"{where}.threshold: must be within [0, 1], got {threshold}")
        positive_label = _field(data, "positive_label", int, where)
        if positive_label not in (0, 1):
            raise ModelLoadError(f"{where}.positive_label: must be 0 or 1, got {positive_label}")
        return cls(
            meaning=_field(data, "meaning", str, where),
            threshold=threshold,
            positive_label=positive_label,
        )


@dataclass(frozen=True)
class Manifest:
    """Everything known about one model version besides its weights (``manifest.json``)."""

    name: str
    version: str
    algorithm: str
    created_at: str  # ISO 8601, UTC
    features: tuple[FeatureSpec, ...]
    input_name: str
    output: OutputSpec
    metrics: Mapping[str, float] = field(hash=False)  # on held-out rows
    onnx_parity_max_abs_diff: float
    data_hash: str  # sha256 of the training arrays
    reference: Mapping[str, tuple[float, ...]] = field(hash=False)  # training sample per feature
    training: Mapping[str, int | float | str] = field(hash=False)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Input names in model input order."""
        return tuple(f.name for f in self.features)

    def defaults(self) -> np.ndarray:
        """Default value per feature, float32 (F,), in input order (for missing features)."""
        return np.array([f.default for f in self.features], dtype=np.float32)

    def reference_rows(self) -> np.ndarray:
        """The reference sample as float32 rows (n, F) in input order.

        ModelLoadError if a feature has no sample or the features' samples differ in length.
        """
        missing = [name for name in self.feature_names if name not in self.reference]
        if missing:
            raise ModelLoadError(f"reference: no sample for features {missing}")
        sizes = {name: len(self.reference[name]) for name in self.feature_names}
        if len(set(sizes.values())) != 1:
            raise ModelLoadError(f"reference: samples differ in length (rows per feature {sizes})")
        columns = [self.reference[name] for name in self.feature_names]
        return np.ascontiguousarray(np.array(columns, dtype=np.float32).T)

    @classmethod
    def from_dict(cls, data: Any, origin: str = "manifest") -> Manifest:
        """Build from parsed JSON; ModelLoadError naming ``origin`` and the field when invalid."""
        if not isinstance(data, Mapping):
            raise ModelLoadError(f"{origin}: expected a JSON object")
        raw_features = _field(data, "features", list, origin)
        if not raw_features:
            raise ModelLoadError(f"{origin}.features: must not be empty")
        features = tuple(
            FeatureSpec.from_dict(f, f"{origin}.features[{i}]") for i, f in enumerate(raw_features)
        )
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ModelLoadError(f"{origin}.features: duplicate feature names in {names}")

        metrics_raw = _field(data, "metrics", dict, origin)
        metrics = {k: _number(metrics_raw, k, f"{origin}.metrics") for k in metrics_raw}
        reference_raw = _field(data, "reference", dict, origin)
        reference: dict[str, tuple[float, ...]] = {}
        for key, values in reference_raw.items():
            if key not in names:
                raise ModelLoadError(f"{origin}.reference: {key!r} is not a feature")
            if not isinstance(values, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values
            ):
                raise ModelLoadError(f"{origin}.reference.{key}: expected a list of numbers")
            # Kept as floats: float() of a 400-digit integer raises, and JSON cannot write
            # NaN or an infinity back (json.loads reads both).
            if not all(-_FLOAT_MAX <= v <= _FLOAT_MAX for v in values):
                raise ModelLoadError(
                    f"{origin}.reference: non-finite values (NaN or inf) in [{key!r}]"
                )
            reference[key] = tuple(float(v) for v in values)
        training = _training(_field(data, "training", dict, origin), f"{origin}.training")

        return cls(
            name=_field(data, "name", str, origin),
            version=_field(data, "version", str, origin),
            algorithm=_field(data, "algorithm", str, origin),
            created_at=_field(data, "created_at", str, origin),
            features=features,
            input_name=_field(data, "input_name", str, origin),
            output=OutputSpec.from_dict(_field(data, "output", dict, origin), f"{origin}.output"),
            metrics=metrics,
            onnx_parity_max_abs_diff=_number(data, "onnx_parity_max_abs_diff", origin),
            data_hash=_field(data, "data_hash", str, origin),
            reference=reference,
            training=training,
        )

    @classmethod
    def from_file(cls, path: Path) -> Manifest:
        """Read and validate a manifest.json; ModelLoadError (cause kept) if missing or invalid."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot read manifest {path}: {exc}") from exc
        return cls.from_dict(data, origin=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, field order as documented in models/README.md."""
        return {
            "name": self.name,
            "version": self.version,
            "algorithm": self.algorithm,
            "created_at": self.created_at,
            "features": [
                {"name": f.name, "dtype": f.dtype, "default": f.default, "source": f.source}
                for f in self.features
            ],
            "input_name": self.input_name,
            "output": {
                "meaning": self.output.meaning,
                "threshold": self.output.threshold,
                "positive_label": self.output.positive_label,
            },
            "metrics": dict(self.metrics),
            "onnx_parity_max_abs_diff": self.onnx_parity_max_abs_diff,
            "data_hash": self.data_hash,
            "reference": {k: list(v) for k, v in self.reference.items()},
            "training": dict(self.training),
        }

    def write(self, path: Path) -> None:
        """Write as JSON atomically (temp file + rename), so readers never see half a file."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=1)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
