"""The scenario's model registry: a champion and a challenger of known true quality.

Against the simulator's labelling rule (``training.datagen.default_probability``), on
60,000 fresh rows (measured when this was written):

- champion "1": gradient boosting without four profile features (annual income, late
  payments, savings, employment years): accuracy 0.844;
- challenger "better": gradient boosting on all features: 0.865 (+2.2 points);
- challenger "equal": the champion's very ONNX file under another version: 0.844;
- challenger "worse": the champion's ONNX file with a decision threshold of 0.3 instead
  of 0.5 (a miscalibrated cut-off): 0.819 (-2.5 points).

Every one only drops profile features, which come from the feature store: requests carry
the loan features, which every version knows.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import orjson

from phoenix_stream.tools.scenarios.harness import MODEL
from phoenix_stream.training.datagen import FEATURE_NAMES, make_dataset
from phoenix_stream.training.train import train_version

Challenger = Literal["better", "equal", "worse"]
CHALLENGERS: tuple[Challenger, ...] = ("better", "equal", "worse")
CHAMPION, CHALLENGER = "1", "2"
_DROPPED = ("annual_income", "late_payments_24m", "savings", "employment_years")
WORSE_THRESHOLD = 0.3


def build_registry(models_dir: Path, challenger: Challenger, *, seed: int = 7) -> None:
    """Train champion "1" and the chosen challenger "2" into ``models_dir`` (idempotent)."""
    if (models_dir / MODEL / CHALLENGER / "manifest.json").is_file():
        return
    X, y = make_dataset(40_000, seed)
    kept = [i for i, name in enumerate(FEATURE_NAMES) if name not in _DROPPED]
    names = [FEATURE_NAMES[i] for i in kept]
    train_version(
        models_dir, MODEL, CHAMPION, X[:, kept], y, "hist_gradient_boosting", seed,
        feature_names=names,
    )  # fmt: skip
    if challenger == "better":
        train_version(models_dir, MODEL, CHALLENGER, X, y, "hist_gradient_boosting", seed)
        return
    source = models_dir / MODEL / CHAMPION
    target = models_dir / MODEL / CHALLENGER
    shutil.copytree(source, target)
    manifest = orjson.loads((target / "manifest.json").read_bytes())
    manifest["version"] = CHALLENGER
    if challenger == "worse":
        manifest["output"]["threshold"] = WORSE_THRESHOLD
        manifest["algorithm"] += f", threshold {WORSE_THRESHOLD}"
    (target / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
