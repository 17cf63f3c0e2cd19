"""The drift scenario's baselines, scored in-process on the run's own requests and labels.

The original champion never retrained, and a champion retrained on a clock (every
``every_windows`` windows, on the newest labelled requests): what the self-healing loop
has to beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.tools.scenarios.harness import MODEL
from phoenix_stream.training.datagen import FEATURE_NAMES

__all__ = ["Periods", "Sent", "baseline_accuracies"]


@dataclass
class Sent:
    """One request as the simulator knows it: when, what the model saw, the true label."""

    at: float
    row: np.ndarray  # float64 (F,) in FEATURE_NAMES order
    label: int


@dataclass(frozen=True)
class Periods:
    """The clock of the periodic baseline: from ``started``, every ``every_windows`` windows
    of ``window_s``; a label is known ``feedback_delay_s`` after its request."""

    started: float
    window_s: float
    every_windows: int
    feedback_delay_s: float


def baseline_accuracies(
    everything: Sequence[Sent],
    registry: Path,
    since: float,
    until: float,
    periods: Periods,
    train_rows: int,
) -> tuple[float | None, float | None]:
    """Accuracy over [since, until) of the champion never retrained, and retrained on a clock.

    ``everything`` is every request the run sent, in time order.
    """
    period = [s for s in everything if since <= s.at < until]
    if not period:
        return None, None
    X = np.vstack([s.row for s in period])
    y = np.array([s.label for s in period])
    champion = ModelRegistry(registry).load(MODEL, "1")
    names = champion.manifest.feature_names
    cols = [FEATURE_NAMES.index(n) for n in names]
    never = champion.labels(champion.predict_proba(X[:, cols].astype(np.float32)))
    accuracy_never = round(float((never == y).mean()), 4)
    # Periodic retraining: at every period boundary, train on the newest train_rows
    # labelled requests before it (the loop's budget); each request is scored by the
    # newest such model.
    step = periods.every_windows * periods.window_s
    boundaries = np.arange(periods.started + step, until, step)
    predicted = never.copy()
    at = np.array([s.at for s in period])
    for boundary in boundaries:
        labelled = [s for s in everything if s.at < boundary - periods.feedback_delay_s]
        window = labelled[-train_rows:]  # sent in time order
        if len(window) < train_rows:
            continue
        Xw = np.vstack([s.row for s in window]).astype(np.float32)
        yw = np.array([s.label for s in window])
        if len(set(yw.tolist())) < 2:
            continue
        # The same learner as the retraining job, in scikit-learn directly: a baseline
        # needs no ONNX export (whose parity check small samples can fail).
        model = HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.1, max_leaf_nodes=31, early_stopping=False,
            random_state=1,
        ).fit(Xw[:, cols], yw)  # fmt: skip
        mine = (at >= boundary) & (at < boundary + step)
        if mine.any():
            rows = X[mine][:, cols].astype(np.float32)
            predicted[mine] = (model.predict_proba(rows)[:, 1] >= 0.5).astype(predicted.dtype)
    accuracy_periodic = round(float((predicted == y).mean()), 4)
    return accuracy_never, accuracy_periodic
