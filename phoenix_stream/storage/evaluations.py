"""Online evaluation in PostgreSQL: metrics per version and variant, and rollout evidence.

Feedback is joined to served and shadow predictions by ``request_id`` in the statements
themselves (see :mod:`phoenix_stream.storage.feedback`): :meth:`EvaluationStore.evaluate`
computes the metrics of each (version, variant) over its latest labelled rows,
:meth:`~EvaluationStore.record_evaluation` keeps about one evaluation per period in
``evaluations``, and the paired and per-arm loss sums are the rollout controller's
evidence. Only labels of the trusted sources count (``LabelSources``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from phoenix_stream.lifecycle.evaluation import (
    AUC_MIN_PER_CLASS,
    LOG_LOSS_EPS,
    LabelledSums,
    VariantMetrics,
    auc,
)
from phoenix_stream.lifecycle.evidence import ArmSummary, PairedSummary
from phoenix_stream.lifecycle.label_sources import LabelSources
from phoenix_stream.storage.database import Database, discard_if_broken, fetch

__all__ = ["EVALUATION_LOCK_ID", "EvaluationStore"]

EVALUATION_LOCK_ID = 0x7068_6F65_6E69_7803
"""pg_advisory_xact_lock key serializing stored evaluations across workers."""


def _distinct_versions(table: str) -> str:
    # A loose index scan over (model, version, ...): one index probe per version, not a
    # scan of the model's rows. Table names come from this module only.
    return f"""
    (SELECT version FROM {table} WHERE model = $1 AND version IS NOT NULL
     ORDER BY version LIMIT 1)
    UNION ALL
    SELECT (SELECT t.version FROM {table} t
            WHERE t.model = $1 AND t.version > v.version ORDER BY t.version LIMIT 1)
    FROM {table}_versions v WHERE v.version IS NOT NULL
    """  # noqa: S608


def _latest_labelled(table: str, variant: str) -> str:
    # The window: the latest labelled rows of one (version, variant), walking the
    # (model, version, predicted_at) index backwards and probing feedback by primary key.
    return f"""
        SELECT t.score, t.label AS predicted, f.label AS actual
        FROM {table} t JOIN feedback f ON f.request_id = t.request_id
        WHERE t.model = $1 AND t.version = v.version AND {variant}
          AND f.source LIKE ANY($5::text[])
          AND t.score IS NOT NULL AND t.label IS NOT NULL
        ORDER BY t.predicted_at DESC, t.request_id DESC
        LIMIT $2
    """  # noqa: S608


# Served variants come from predictions; shadow answers (stored with variant
# 'challenger') from shadow_predictions, all reported as 'shadow'. Counts and sums are
# computed here; scores and labels travel only for groups where AUC will be reported.
_EVALUATE = f"""
WITH RECURSIVE
predictions_versions(version) AS ({_distinct_versions("predictions")}),
shadow_predictions_versions(version) AS ({_distinct_versions("shadow_predictions")}),
labelled AS (
    SELECT v.version, k.variant AS variant, w.score, w.predicted, w.actual
    FROM predictions_versions v
    CROSS JOIN (VALUES ('champion'), ('challenger')) AS k(variant)
    CROSS JOIN LATERAL ({_latest_labelled("predictions", "t.variant = k.variant")}) w
    WHERE v.version IS NOT NULL
    UNION ALL
    SELECT v.version, 'shadow', w.score, w.predicted, w.actual
    FROM shadow_predictions_versions v
    CROSS JOIN LATERAL ({_latest_labelled("shadow_predictions", "true")}) w
    WHERE v.version IS NOT NULL
)
SELECT version, variant,
       count(*) AS n,
       sum(actual) AS positives,
       sum(CASE WHEN predicted = actual THEN 1 ELSE 0 END) AS correct,
       sum(-ln(least(greatest(CASE WHEN actual = 1 THEN score ELSE 1 - score END, $3::float8),
                     1 - $3::float8))) AS log_loss_sum,
       sum((score - actual) * (score - actual)) AS brier_sum,
       CASE WHEN sum(actual) >= $4 AND count(*) - sum(actual) >= $4
            THEN array_agg(score) END AS scores,
       CASE WHEN sum(actual) >= $4 AND count(*) - sum(actual) >= $4
            THEN array_agg(actual) END AS actuals
FROM labelled
GROUP BY version, variant
ORDER BY version, variant
"""  # noqa: S608 - no input in the text, only in parameters

# predicted_at >= since is implied by received_at >= since (a prediction follows its
# request) and lets the (model, version, predicted_at) index bound the scan.
_PAIRED = """
SELECT count(*) AS n,
       coalesce(sum(lc - lx), 0) AS sum_d,
       coalesce(sum((lc - lx) * (lc - lx)), 0) AS sum_d2,
       coalesce(sum(lc), 0) AS sum_lc
FROM (
    SELECT (p.label <> f.label)::int AS lc, (s.label <> f.label)::int AS lx
    FROM predictions p
    JOIN shadow_predictions s ON s.request_id = p.request_id
    JOIN feedback f ON f.request_id = p.request_id
    WHERE p.model = $1 AND p.version = $2 AND p.variant = 'champion'
      AND s.model = $1 AND s.version = $3
      AND p.label IS NOT NULL AND s.label IS NOT NULL AND f.source LIKE ANY($5::text[])
      AND p.predicted_at >= to_timestamp($4) AND p.received_at >= to_timestamp($4)
) pairs
"""

_ARMS = """
SELECT version, count(*) AS n, coalesce(sum(loss), 0) AS sum_loss,
       coalesce(sum(loss * loss), 0) AS sum_loss2
FROM (
    SELECT p.version, (p.label <> f.label)::int AS loss
    FROM predictions p JOIN feedback f ON f.request_id = p.request_id
    WHERE p.model = $1 AND p.version = ANY($2::text[]) AND p.label IS NOT NULL
      AND f.source LIKE ANY($4::text[])
      AND p.predicted_at >= to_timestamp($3) AND p.received_at >= to_timestamp($3)
) served
GROUP BY version
"""

_LAST_EVALUATED_RECENTLY = """
SELECT coalesce(max(evaluated_at) > now() - make_interval(secs => $2), false)
FROM evaluations WHERE model = $1
"""
_INSERT_EVALUATION = """
INSERT INTO evaluations (model, version, variant, evaluated_at, window_rows, n, accuracy,
                         log_loss, brier, auc, positive_rate)
VALUES ($1, $2, $3, now(), $4, $5, $6, $7, $8, $9, $10)
"""


class EvaluationStore:
    """Evaluation queries on the worker's PostgreSQL pool, counting ``sources``' labels."""

    def __init__(self, database: Database, sources: LabelSources | None = None) -> None:
        self._database = database
        # Which labels evaluations and summaries count (default: HTTP only).
        self.sources = sources or LabelSources()

    async def evaluate(
        self, model: str, window: int, min_per_class: int = AUC_MIN_PER_CLASS
    ) -> list[VariantMetrics]:
        """Metrics per (version, variant) of ``model`` over its latest ``window`` labelled rows.

        Served predictions give variants champion and challenger, shadow predictions the
        variant ``shadow``; "latest" is by predicted_at. AUC is None below
        ``min_per_class`` labels of either class. Ordered by version, then variant.
        """
        rows = await fetch(
            self._database,
            _EVALUATE,
            model,
            int(window),
            LOG_LOSS_EPS,
            int(min_per_class),
            self.sources.like_patterns,
            what=f"evaluating {model!r}",
        )
        out: list[VariantMetrics] = []
        for row in rows:
            sums = LabelledSums(
                int(row["n"]),
                int(row["positives"]),
                int(row["correct"]),
                float(row["log_loss_sum"]),
                float(row["brier_sum"]),
            )
            area = None
            if row["scores"] is not None:
                area = auc(row["actuals"], row["scores"], min_per_class)
            out.append(VariantMetrics.from_sums(row["version"], row["variant"], sums, area))
        return out

    async def record_evaluation(
        self, model: str, results: Sequence[VariantMetrics], window: int, min_gap_s: float
    ) -> bool:
        """Store one evaluation of ``model`` unless one was stored in the last ``min_gap_s`` s.

        Every worker evaluates on its timer; an advisory lock and the gap keep the table to
        about one evaluation per period. True if stored. SinkError on failure.
        """
        if not results:
            return False
        values = [
            (
                model,
                r.version,
                r.variant,
                int(window),
                r.n,
                r.accuracy,
                r.log_loss,
                r.brier,
                r.auc,
                r.positive_rate,
            )
            for r in results
        ]
        async with self._database.connection() as conn:
            try:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", EVALUATION_LOCK_ID)
                    if await conn.fetchval(_LAST_EVALUATED_RECENTLY, model, float(min_gap_s)):
                        return False
                    await conn.executemany(_INSERT_EVALUATION, values)
            except BaseException as exc:
                discard_if_broken(conn, exc)
                raise
        return True

    async def paired_summary(
        self, model: str, champion: str, challenger: str, since: float
    ) -> PairedSummary:
        """Sums of d = 0-1 loss of ``champion`` minus that of ``challenger`` over pairs.

        A pair is a labelled request served by ``champion`` (variant champion) and scored
        in shadow by ``challenger``, received at or after ``since`` (epoch seconds).
        """
        rows = await fetch(
            self._database,
            _PAIRED,
            model,
            champion,
            challenger,
            float(since),
            self.sources.like_patterns,
            what=f"pairing {model!r}",
        )
        row = rows[0]
        return PairedSummary(
            int(row["n"]), float(row["sum_d"]), float(row["sum_d2"]), float(row["sum_lc"])
        )

    async def arm_summaries(
        self, model: str, champion: str, challenger: str, since: float
    ) -> dict[str, ArmSummary]:
        """0-1 loss sums per version (both keys always there) over served labelled predictions.

        For A/B and canary splits: predictions of ``champion`` and ``challenger`` received
        at or after ``since`` (epoch seconds) that have feedback.
        """
        rows = await fetch(
            self._database,
            _ARMS,
            model,
            [champion, challenger],
            float(since),
            self.sources.like_patterns,
            what=f"arms of {model!r}",
        )
        found: Mapping[str, ArmSummary] = {
            row["version"]: ArmSummary(
                int(row["n"]), float(row["sum_loss"]), float(row["sum_loss2"])
            )
            for row in rows
        }
        return {version: found.get(version, ArmSummary()) for version in (champion, challenger)}
