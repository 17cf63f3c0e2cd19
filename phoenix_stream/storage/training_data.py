"""Training rows for retraining: served predictions joined with their feedback, in PostgreSQL.

A row is the feature vector a model saw (``predictions.features``, name -> value) and the
true label (``feedback.label``), joined by ``request_id``. One statement, bounded by a
limit: it walks the ``(model, predicted_at)`` index backwards from the newest prediction
and stops after ``limit`` usable rows. Rows served while Redis was down (``degraded``:
every feature a default) and rows missing a feature or holding a non-number are left
out, and so are labels of a source not trusted (``lifecycle.label_sources``). The store
shares the worker's asyncpg pool (``Database.connection``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from phoenix_stream.exceptions import SinkError
from phoenix_stream.lifecycle.label_sources import LabelSources
from phoenix_stream.lifecycle.training_rows import TrainingRows
from phoenix_stream.storage.database import Database, is_data_error

__all__ = ["TrainingData"]

log = logging.getLogger(__name__)

# predicted_at >= since follows from received_at >= since (a prediction follows its
# request) and lets the (model, predicted_at) index bound the backward scan. The vector
# is built in the caller's feature order; a missing or non-numeric value becomes NULL
# and the row is skipped before the limit counts it.
_FETCH = """
SELECT x, y, at FROM (
    SELECT ARRAY(
               SELECT CASE WHEN jsonb_typeof(p.features -> n.name) = 'number'
                           THEN (p.features ->> n.name)::float8 END
               FROM unnest($2::text[]) WITH ORDINALITY AS n(name, i)
               ORDER BY n.i
           ) AS x,
           f.label::int AS y,
           extract(epoch FROM p.received_at)::float8 AS at,
           p.predicted_at, p.request_id
    FROM predictions p
    JOIN feedback f ON f.request_id = p.request_id
    WHERE p.model = $1
      AND p.predicted_at >= to_timestamp($3)
      AND p.received_at >= to_timestamp($3) AND p.received_at < to_timestamp($4)
      AND jsonb_typeof(p.features) = 'object' AND p.features ?& $2::text[]
      AND p.degraded IS NOT TRUE
      AND f.source LIKE ANY($6::text[])
) labelled
WHERE array_position(x, NULL) IS NULL
ORDER BY predicted_at DESC, request_id DESC
LIMIT $5
"""


class TrainingData:
    """Reads training rows on the worker's PostgreSQL pool; only labels of trusted sources."""

    def __init__(self, database: Database, sources: LabelSources | None = None) -> None:
        self._database = database
        self.sources = sources or LabelSources()  # default: HTTP labels only

    async def fetch(
        self,
        model: str,
        feature_names: Sequence[str],
        *,
        since: float,
        until: float,
        limit: int,
    ) -> TrainingRows:
        """The newest ``limit`` labelled predictions of ``model`` received in [since, until).

        Features in the order of ``feature_names`` (the champion's manifest); times in
        epoch seconds. SinkError (driver's error as cause) when PostgreSQL fails.
        """
        names = tuple(feature_names)
        if not names:
            raise ValueError("feature_names must not be empty")
        if limit <= 0:
            raise ValueError(f"limit must be positive, not {limit}")
        try:
            async with self._database.connection() as conn:
                try:
                    rows: list[Any] = await conn.fetch(
                        _FETCH,
                        model,
                        list(names),
                        float(since),
                        float(until),
                        int(limit),
                        self.sources.like_patterns,
                    )
                except BaseException as exc:
                    # A statement cut short can leave the connection's protocol confused.
                    if not is_data_error(exc):
                        conn.terminate()
                    raise
        except SinkError as exc:
            raise SinkError(f"reading training rows of {model!r} failed: {exc}") from (
                exc.__cause__ or exc
            )
        # Building the arrays is O(rows x features) Python work: off the event loop.
        found = await asyncio.to_thread(_to_arrays, rows, names)
        return found._replace(label_sources=tuple(self.sources.names))


def _to_arrays(rows: Sequence[Any], names: tuple[str, ...]) -> TrainingRows:
    """Oldest first; rows whose values overflow float32 (inf) are dropped."""
    n_features = len(names)
    if not rows:
        empty = np.empty((0, n_features), dtype=np.float32)
        return TrainingRows(empty, np.empty(0, dtype=np.int64), names, None, None)
    ordered = rows[::-1]
    X = np.array([row["x"] for row in ordered], dtype=np.float64).reshape(-1, n_features)
    with np.errstate(over="ignore"):
        X32 = X.astype(np.float32)
    y = np.array([row["y"] for row in ordered], dtype=np.int64)
    at = np.array([row["at"] for row in ordered], dtype=np.float64)
    finite = np.isfinite(X32).all(axis=1)
    if not finite.all():
        log.warning("dropped %d training rows with values beyond float32", int((~finite).sum()))
        X32, y, at = X32[finite], y[finite], at[finite]
    if len(y) == 0:
        return TrainingRows(X32, y, names, None, None)
    return TrainingRows(np.ascontiguousarray(X32), y, names, float(at.min()), float(at.max()))
