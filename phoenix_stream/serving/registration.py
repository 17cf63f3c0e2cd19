"""Registering a model version from a folder: validate it whole, then move it in atomically.

A folder with ``model.onnx`` + ``manifest.json`` is checked against everything serving
relies on (the manifest, the ONNX input and probability output, a test inference on the
manifest's reference sample) before anything is written. A refusal is a RegistrationError
saying what is wrong, and leaves ``models_dir`` as it was. Versions are immutable: an
existing one is never overwritten.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from phoenix_stream.exceptions import ModelLoadError
from phoenix_stream.messages.validation import is_identifier
from phoenix_stream.serving.engine import OnnxModel
from phoenix_stream.serving.manifest import MANIFEST_FILE, MODEL_FILE, Manifest

__all__ = [
    "MIN_REFERENCE_ROWS",
    "RegistrationError",
    "register_version",
    "validate_version",
]

log = logging.getLogger(__name__)

# The smallest drift reference accepted. Training ships REFERENCE_SIZE (5,000) rows when it
# has them (docs/architecture.md section 5); a version retrained on fewer rows (the
# retraining job's minimum is 2,000, of which 75 % train) still needs enough for a KS test.
MIN_REFERENCE_ROWS = 500
# float32 rounding lets a softmax column reach 1 + a few ulps; more than this is a bug.
_PROBABILITY_SLACK = 1e-6
_CLASSES = 2  # binary classifiers: columns P(label 0), P(label 1)


class RegistrationError(ModelLoadError):
    """A model version folder was refused; the message says what is wrong."""


@dataclass(frozen=True)
class _Candidate:
    """A version folder's bytes, read once, so what was validated is what gets copied."""

    manifest: Manifest
    manifest_bytes: bytes
    onnx_bytes: bytes


def _read_folder(source: Path) -> tuple[bytes, bytes]:
    """(manifest bytes, ONNX bytes) of a version folder."""
    if not source.is_dir():
        raise RegistrationError(f"{source}: not a directory")
    missing = [f for f in (MANIFEST_FILE, MODEL_FILE) if not (source / f).is_file()]
    if missing:
        raise RegistrationError(f"{source}: missing {' and '.join(missing)}")
    try:
        return (source / MANIFEST_FILE).read_bytes(), (source / MODEL_FILE).read_bytes()
    except OSError as exc:
        raise RegistrationError(f"{source}: cannot read: {exc}") from exc


def _parse_manifest(data: bytes, origin: str) -> Manifest:
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistrationError(f"{origin}: not valid JSON: {exc}") from exc
    try:
        return Manifest.from_dict(parsed, origin=origin)
    except ModelLoadError as exc:
        raise RegistrationError(str(exc)) from exc


def _check_identity(manifest: Manifest, name: str | None, version: str | None) -> None:
    """Name and version are path components, and agree with what the caller asked for."""
    checks = (("name", name, manifest.name), ("version", version, manifest.version))
    for field, wanted, actual in checks:
        if not is_identifier(actual):
            raise RegistrationError(
                f"manifest {field} {actual!r} is not a valid {field} (letters, digits, '.', '_', "
                "'-', at most 128, not starting with '.')"
            )
        if wanted is not None and wanted != actual:
            raise RegistrationError(
                f"{field} {wanted!r} was asked for, but the manifest says {actual!r} "
                f"(register under the manifest's {field}, or fix the manifest)"
            )


def _reference_rows(manifest: Manifest, min_rows: int) -> np.ndarray:
    """The reference sample, float32 (n, F), checked complete, long enough and finite."""
    try:
        rows = manifest.reference_rows()
    except ModelLoadError as exc:
        raise RegistrationError(f"manifest {exc}") from exc
    if len(rows) < min_rows:
        raise RegistrationError(
            f"manifest reference: {len(rows)} rows, at least {min_rows} required "
            "(the drift tests compare live windows with it)"
        )
    bad = ~np.isfinite(rows)
    if bad.any():
        columns = sorted({manifest.feature_names[j] for j in np.nonzero(bad)[1]})
        raise RegistrationError(f"manifest reference: non-finite values (NaN or inf) in {columns}")
    return rows


def _open_session(onnx_bytes: bytes, origin: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # warnings only, as the engine
    try:
        return ort.InferenceSession(
            onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT's error classes share no base below Exception
        raise RegistrationError(f"{origin}: ONNX Runtime cannot load it: {exc}") from exc


def _check_input(session: ort.InferenceSession, manifest: Manifest, origin: str) -> None:
    """Exactly one float32 input [dynamic batch, F], named as the manifest says."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise RegistrationError(
            f"{origin}: expected exactly 1 input, found {len(inputs)}: {[i.name for i in inputs]}"
        )
    (given,) = inputs
    n_features = len(manifest.features)
    if given.name != manifest.input_name:
        raise RegistrationError(
            f"{origin}: input is named {given.name!r}, manifest input_name is "
            f"{manifest.input_name!r}"
        )
    if given.type != "tensor(float)":
        raise RegistrationError(
            f"{origin}: input {given.name!r} is {given.type}, expected tensor(float) (float32)"
        )
    shape = list(given.shape)
    if len(shape) != 2:
        raise RegistrationError(
            f"{origin}: input {given.name!r} has shape {shape}, expected [batch, {n_features}]"
        )
    batch, width = shape
    if not isinstance(width, int):
        raise RegistrationError(
            f"{origin}: input feature dimension is dynamic ({width!r}), expected {n_features} "
            "(the manifest's features)"
        )
    if width != n_features:
        raise RegistrationError(
            f"{origin}: input takes {width} features, the manifest lists {n_features}"
        )
    # ONNX Runtime rejects any other batch size on a fixed dimension, and the engine
    # scores batches of every size.
    if isinstance(batch, int):
        raise RegistrationError(
            f"{origin}: input batch dimension is fixed at {batch}; it must be dynamic "
            "(export with [None, F])"
        )


def _probability_output(session: ort.InferenceSession, origin: str) -> str:
    """Name of the output the engine serves from: the first float (n, classes) tensor."""
    for out in session.get_outputs():
        if out.type == "tensor(float)" and len(out.shape) == 2:
            columns = out.shape[1]
            if isinstance(columns, int) and columns != _CLASSES:
                raise RegistrationError(
                    f"{origin}: probability output {out.name!r} has {columns} columns, "
                    f"expected {_CLASSES} (P(0), P(1))"
                )
            return str(out.name)
    described = [(o.name, o.type, o.shape) for o in session.get_outputs()]
    raise RegistrationError(
        f"{origin}: no float probability output [batch, {_CLASSES}] among {described} "
        "(export with zipmap disabled)"
    )


def _check_inference(
    session: ort.InferenceSession, manifest: Manifest, output: str, rows: np.ndarray, origin: str
) -> None:
    """The reference rows score to finite probabilities in [0, 1], one row of classes each."""
    try:
        (proba,) = session.run([output], {manifest.input_name: rows})
    except Exception as exc:  # ORT's error classes share no base below Exception
        raise RegistrationError(
            f"{origin}: test inference on the {len(rows)} reference rows failed: {exc}"
        ) from exc
    proba = np.asarray(proba)
    if proba.shape != (len(rows), _CLASSES):
        raise RegistrationError(
            f"{origin}: output {output!r} has shape {proba.shape} for {len(rows)} reference "
            f"rows, expected ({len(rows)}, {_CLASSES})"
        )
    finite = np.isfinite(proba)
    if not finite.all():
        first = int(np.nonzero(~finite.all(axis=1))[0][0])
        raise RegistrationError(
            f"{origin}: {int((~finite).sum())} non-finite probabilities (NaN or inf) on the "
            f"reference sample, first at row {first}"
        )
    low, high = float(proba.min()), float(proba.max())
    if low < -_PROBABILITY_SLACK or high > 1 + _PROBABILITY_SLACK:
        raise RegistrationError(
            f"{origin}: probabilities outside [0, 1] on the reference sample "
            f"(min {low:.6g}, max {high:.6g})"
        )


def _validate(
    source: Path, name: str | None, version: str | None, min_reference_rows: int
) -> _Candidate:
    manifest_bytes, onnx_bytes = _read_folder(source)
    manifest = _parse_manifest(manifest_bytes, str(source / MANIFEST_FILE))
    _check_identity(manifest, name, version)
    rows = _reference_rows(manifest, min_reference_rows)
    origin = str(source / MODEL_FILE)
    session = _open_session(onnx_bytes, origin)
    _check_input(session, manifest, origin)
    output = _probability_output(session, origin)
    _check_inference(session, manifest, output, rows, origin)
    return _Candidate(manifest, manifest_bytes, onnx_bytes)


def validate_version(
    source_folder: Path,
    *,
    name: str | None = None,
    version: str | None = None,
    min_reference_rows: int = MIN_REFERENCE_ROWS,
) -> Manifest:
    """The folder's manifest if the version could be registered; RegistrationError otherwise.

    ``min_reference_rows`` is the smallest reference sample accepted (rows).
    """
    return _validate(Path(source_folder), name, version, min_reference_rows).manifest


def _write_file(path: Path, data: bytes) -> None:
    # fsync before the rename, so a crash cannot publish a version with empty files.
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    path.chmod(0o644)  # workers may run as another user


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exists_error(final: Path) -> RegistrationError:
    return RegistrationError(
        f"{final} already exists: versions are immutable, register under a new version"
    )


def _install(candidate: _Candidate, models_dir: Path) -> Path:
    """Stage the files in a hidden dir of models_dir, then rename it to <name>/<version>."""
    manifest = candidate.manifest
    model_dir = models_dir / manifest.name
    final = model_dir / manifest.version
    models_dir.mkdir(parents=True, exist_ok=True)
    # Hidden (the registry ignores dot-names) and directly in models_dir, so a refusal
    # never leaves an empty <name> folder behind.
    staging = Path(
        tempfile.mkdtemp(dir=models_dir, prefix=f".register-{manifest.name}-{manifest.version}-")
    )
    created_model_dir = False
    try:
        _write_file(staging / MODEL_FILE, candidate.onnx_bytes)
        _write_file(staging / MANIFEST_FILE, candidate.manifest_bytes)
        staging.chmod(0o755)
        # The serving engine's own checks, on the very file that will be published.
        OnnxModel(staging / MODEL_FILE, positive_column=manifest.output.positive_label)
        try:
            model_dir.mkdir()
            created_model_dir = True
        except FileExistsError:
            pass
        if final.exists() or final.is_symlink():
            raise _exists_error(final)
        try:
            os.rename(staging, final)
        except OSError as exc:  # a concurrent registration of the same version won
            if final.exists():
                raise _exists_error(final) from exc
            raise
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if created_model_dir:
            try:
                model_dir.rmdir()
            except OSError:  # another version arrived meanwhile: keep it
                pass
        if isinstance(exc, OSError):
            raise RegistrationError(f"cannot write {final}: {exc}") from exc
        if isinstance(exc, ModelLoadError) and not isinstance(exc, RegistrationError):
            raise RegistrationError(str(exc)) from exc
        raise
    _fsync_dir(model_dir)
    return final


def register_version(
    source_folder: Path,
    models_dir: Path,
    *,
    name: str | None = None,
    version: str | None = None,
    min_reference_rows: int = MIN_REFERENCE_ROWS,
) -> Manifest:
    """Validate the version in ``source_folder`` and copy it to ``models_dir/<name>/<version>``.

    ``name`` and ``version`` default to the manifest's and must equal them when given;
    ``min_reference_rows`` is the smallest reference sample accepted (rows). Raises
    RegistrationError, with nothing written, when the folder or the target is refused.
    """
    source, models_dir = Path(source_folder), Path(models_dir)
    candidate = _validate(source, name, version, min_reference_rows)
    manifest = candidate.manifest
    # Checked before staging too, so the common refusal costs no copy.
    final = models_dir / manifest.name / manifest.version
    if final.exists() or final.is_symlink():
        raise _exists_error(final)
    path = _install(candidate, models_dir)
    log.info(
        "registered %s version %s from %s -> %s", manifest.name, manifest.version, source, path
    )
    return manifest
