"""The demo models' names, and whether a registry holds them, without the training stack.

``phoenix-stream train`` with the models already there answered in 4.7 s when it imported
scikit-learn and skl2onnx just to find that out; this module imports neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from phoenix_stream.serving.registry import ModelRegistry

__all__ = ["DEMO_MODEL_NAME", "DEMO_VERSIONS", "ModelKind", "demo_models_present"]

ModelKind = Literal["hist_gradient_boosting", "logistic_regression"]
DEMO_MODEL_NAME = "credit-risk"
DEMO_VERSIONS: dict[str, ModelKind] = {"1": "hist_gradient_boosting", "2": "logistic_regression"}


def demo_models_present(models_dir: Path) -> bool:
    """Whether every demo version is in the registry at ``models_dir``."""
    present = ModelRegistry(Path(models_dir)).versions(DEMO_MODEL_NAME)
    return all(version in present for version in DEMO_VERSIONS)
