"""The labelled rows a retraining learns from (read by ``storage.training_data``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["TrainingRows"]


class TrainingRows(NamedTuple):
    """Labelled rows, oldest first: X float32 (n, F), y int64 (n,), times in epoch seconds.

    ``first_at`` and ``last_at`` are the earliest and latest ``received_at`` of the rows
    (None when there are none); ``label_sources`` the label sources counted
    (``LabelSources.names``).
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    first_at: float | None
    last_at: float | None
    label_sources: tuple[str, ...] = ("http",)
