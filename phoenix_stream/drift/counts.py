"""Histogram counts of one batch of predictions, per model version: the drift tables' input.

The drift collector bins each batch of served champion predictions (the feature vector
the model saw, and its score) on the version's reference bins and sends one small
``BatchCounts`` record per version to the ``drift-counts`` topic, keyed by
``model/version``: the key of the windowed table that adds them up, so the table is
written only from a stream co-partitioned with it. One record per batch, not per
prediction, bounds the table's changelog traffic whatever the request rate.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from phoenix_stream.drift.histograms import SCORE
from phoenix_stream.drift.references import DriftReferences
from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.text import UnstorableText
from phoenix_stream.messages.validation import is_identifier, load_json
from phoenix_stream.serving.router import CHAMPION

MAX_CELLS = 100_000  # features x bins of one record, far above any real model's


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """Counts (F+1, B) of ``n`` predictions of one model version; ``at`` in epoch seconds."""

    model: str
    version: str
    counts: np.ndarray  # int64 (F+1, B): the features in manifest order, then the score
    n: int
    at: float

    @property
    def key(self) -> str:
        """The table key: ``model/version``."""
        return f"{self.model}/{self.version}"

    def encode(self) -> bytes:
        """JSON bytes for the drift-counts topic."""
        return orjson.dumps(
            {
                "model": self.model,
                "version": self.version,
                "counts": self.counts.tolist(),
                "n": self.n,
                "at": self.at,
            }
        )


def decode_counts(raw: bytes | None) -> BatchCounts:
    """A record of the drift-counts topic; ValidationError naming the field when invalid."""
    try:
        data = load_json(raw or b"")
    except UnstorableText:
        raise  # a ValidationError naming the field already
    except ValueError as exc:
        raise ValidationError("$", f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValidationError("$", "must be a JSON object")
    names = {}
    for key in ("model", "version"):
        value = data.get(key)
        if not isinstance(value, str) or not is_identifier(value):
            raise ValidationError(key, "must be a model name or version")
        names[key] = value
    counts = data.get("counts")
    if (
        not isinstance(counts, list)
        or not counts
        or not all(isinstance(row, list) and len(row) == len(counts[0]) for row in counts)
        or len(counts) * len(counts[0]) > MAX_CELLS
        or not all(type(c) is int and 0 <= c < 2**62 for row in counts for c in row)
    ):
        raise ValidationError("counts", "must be a rectangular list of non-negative integers")
    n = data.get("n")
    if type(n) is not int or n < 0:
        raise ValidationError("n", "must be a non-negative integer")
    at = data.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise ValidationError("at", "must be seconds since epoch")
    return BatchCounts(names["model"], names["version"], np.array(counts, np.int64), n, float(at))


def count_predictions(
    predictions: Iterable[Mapping[str, Any]], references: DriftReferences
) -> list[BatchCounts]:
    """Bin served champion predictions per version (others, and unusable rows, skipped).

    Versions must be prepared in ``references`` first (``prepare``).
    """
    rows: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
    latest: dict[tuple[str, str], float] = {}
    for p in predictions:
        if p.get("variant") != CHAMPION:
            continue
        key = (str(p.get("model")), str(p.get("version")))
        bins = references.bins(*key)
        features = p.get("features")
        if bins is None or not isinstance(features, dict):
            continue
        try:
            row = [float(features[name]) for name in bins.names[:-1]]
            row.append(float(p["score"]))
        except (KeyError, TypeError, ValueError):
            continue
        if not all(math.isfinite(v) for v in row):
            continue
        rows[key].append(row)
        at = p.get("received_at")
        if isinstance(at, int | float) and not isinstance(at, bool):
            latest[key] = max(latest.get(key, 0.0), float(at))
    out: list[BatchCounts] = []
    for (model, version), batch in rows.items():
        bins = references.bins(model, version)
        assert bins is not None and bins.names[-1] == SCORE
        counts = bins.count(np.asarray(batch, dtype=np.float64))
        out.append(
            BatchCounts(model, version, counts, len(batch), latest.get((model, version), 0.0))
        )
    return out
