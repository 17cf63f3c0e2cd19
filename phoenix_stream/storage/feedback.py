"""Feedback in PostgreSQL, joined to predictions, and the online evaluation queries.

**The join** is done in PostgreSQL, by ``request_id``: ``feedback`` is keyed by request_id,
and so are ``predictions`` (served answers, variant champion or challenger) and
``shadow_predictions`` (challenger answers scored in shadow), both written by the sink.
The Kafka topics therefore need no co-partitioning (predictions are keyed by entity_id,
feedback by request_id) and a label may arrive hours before or after its prediction is
stored: whichever comes second completes the join, with nothing held in worker memory.

Writes: one statement per batch inserts the labels (``ON CONFLICT (request_id) DO
NOTHING``: the first label stored wins), flags those whose request has no stored
prediction yet (``orphan``) and returns, for the rest, the label already stored, so
duplicates and conflicting labels are counted without a second round trip. Outages are
retried with backoff like the sink's writes (``storage.database.is_transient``). Orphans
older than a TTL are deleted by :meth:`FeedbackStore.expire_orphans`, bounded per call.

The store shares the worker's asyncpg pool (``Database.connection``), which also
applies the migrations (``sql/0003_feedback.sql``: tables ``feedback`` and
``evaluations``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from phoenix_stream.exceptions import SinkError
from phoenix_stream.lifecycle.evaluation import (
    AUC_MIN_PER_CLASS,
    LOG_LOSS_EPS,
    LabelledSums,
    VariantMetrics,
    auc,
)
from phoenix_stream.lifecycle.evidence import ArmSummary, PairedSummary
from phoenix_stream.lifecycle.feedback import ParsedFeedback
from phoenix_stream.lifecycle.label_sources import LabelSources, http_source
from phoenix_stream.retrying import Backoff, logged_retry, retry_outages
from phoenix_stream.storage.database import Database, is_data_error, is_transient

__all__ = [
    "EVALUATION_LOCK_ID",
    "ORPHAN_LOCK_ID",
    "FeedbackReport",
    "FeedbackStore",
    "OrphanCleanup",
]

log = logging.getLogger(__name__)

EVALUATION_LOCK_ID = 0x7068_6F65_6E69_7803
"""pg_advisory_xact_lock key serializing stored evaluations across workers."""

ORPHAN_LOCK_ID = 0x7068_6F65_6E69_7806
"""pg_advisory_xact_lock key serializing Kafka label writes, so the orphan bound holds."""

# Kafka labels. An orphan (no stored prediction, no stored label) is inserted only while
# fewer than $4 orphans are held; the rest come back flagged overflow. The outer query
# sees the table as it was before this statement: stored_label is the label that was
# already there (NULL for a row inserted now).
_WRITE = """
WITH incoming AS (
    SELECT * FROM unnest($1::text[], $2::smallint[], $3::float8[]) WITH ORDINALITY
        AS t(request_id, label, observed_at, ord)
),
judged AS (
    SELECT i.*,
           EXISTS (SELECT 1 FROM predictions p WHERE p.request_id = i.request_id) AS joined,
           EXISTS (SELECT 1 FROM feedback f WHERE f.request_id = i.request_id) AS stored
    FROM incoming i
),
ranked AS (
    SELECT j.*,
           CASE WHEN NOT j.joined AND NOT j.stored THEN
               row_number() OVER (PARTITION BY NOT j.joined AND NOT j.stored ORDER BY j.ord)
           END AS orphan_rank
    FROM judged j
),
room AS (
    SELECT greatest($4::bigint - (SELECT count(*) FROM feedback WHERE orphan), 0) AS n
),
inserted AS (
    INSERT INTO feedback (request_id, label, observed_at, received_at, orphan, source)
    SELECT r.request_id, r.label, to_timestamp(r.observed_at), now(), NOT r.joined, 'kafka'
    FROM ranked r CROSS JOIN room
    WHERE r.orphan_rank IS NULL OR r.orphan_rank <= room.n
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id, orphan
)
SELECT r.request_id, n.request_id IS NOT NULL AS inserted, n.orphan, f.label AS stored_label,
       coalesce(r.orphan_rank > room.n, false) AS overflow
FROM ranked r CROSS JOIN room
LEFT JOIN inserted n ON n.request_id = r.request_id
LEFT JOIN feedback f ON f.request_id = r.request_id
ORDER BY r.ord
"""

# HTTP labels: stored only for a stored prediction of a model the principal may label
# ($5 NULL: any model); model is NULL for an unknown request_id. A label stored from a
# source not trusted ($6: the trusted LIKE patterns) is replaced: otherwise whoever
# writes the Kafka topic first could keep every authenticated label out.
_ATTACH = """
WITH incoming AS (
    SELECT * FROM unnest($1::text[], $2::smallint[], $3::float8[])
        AS t(request_id, label, observed_at)
),
known AS (
    SELECT i.*, p.request_id IS NOT NULL AS found, p.model
    FROM incoming i LEFT JOIN predictions p ON p.request_id = i.request_id
),
inserted AS (
    INSERT INTO feedback (request_id, label, observed_at, received_at, orphan, source)
    SELECT k.request_id, k.label, to_timestamp(k.observed_at), now(), false, $4
    FROM known k
    WHERE k.found AND ($5::text[] IS NULL OR k.model = ANY($5::text[]))
    ON CONFLICT (request_id) DO UPDATE
        SET label = EXCLUDED.label, observed_at = EXCLUDED.observed_at,
            received_at = EXCLUDED.received_at, orphan = false, source = EXCLUDED.source
        WHERE NOT (feedback.source LIKE ANY($6::text[]))
    RETURNING request_id
)
SELECT k.request_id, k.found, k.model, n.request_id IS NOT NULL AS inserted,
       f.label AS stored_label
FROM known k
LEFT JOIN inserted n ON n.request_id = k.request_id
LEFT JOIN feedback f ON f.request_id = k.request_id
"""

_EXPIRE_ORPHANS = """
WITH candidates AS (
    SELECT request_id FROM feedback
    WHERE orphan AND received_at < now() - make_interval(secs => $1)
    ORDER BY received_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
judged AS (
    SELECT c.request_id,
           EXISTS (SELECT 1 FROM predictions p WHERE p.request_id = c.request_id) AS joined
    FROM candidates c
),
adopted AS (
    UPDATE feedback f SET orphan = false FROM judged j
    WHERE f.request_id = j.request_id AND j.joined
    RETURNING f.request_id
),
expired AS (
    DELETE FROM feedback f USING judged j
    WHERE f.request_id = j.request_id AND NOT j.joined
    RETURNING f.request_id
)
SELECT (SELECT count(*) FROM expired) AS expired, (SELECT count(*) FROM adopted) AS adopted
"""


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


@dataclass(frozen=True, slots=True)
class FeedbackReport:
    """Outcome of one feedback batch write, in items.

    ``written``: stored now; ``duplicates``: skipped, their request_id already had a label
    (stored before, or earlier in the batch); ``conflicts``: duplicates whose label differs
    from the one that won; ``orphans``: written now for a request with no stored prediction.
    ``conflict_examples``: up to a few ``(request_id, label kept, label refused)``.
    ``overflow``: orphans refused, not stored, because ``orphan_max`` orphans are held.
    ``missing`` and ``out_of_scope`` (HTTP only): items refused because their request has
    no stored prediction, or one of a model the principal may not label.
    """

    written: int = 0
    duplicates: int = 0
    conflicts: int = 0
    orphans: int = 0
    conflict_examples: list[tuple[str, int, int]] = field(default_factory=list)
    overflow: list[ParsedFeedback] = field(default_factory=list)
    missing: list[ParsedFeedback] = field(default_factory=list)
    out_of_scope: list[ParsedFeedback] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OrphanCleanup:
    """One cleanup pass: orphans deleted, and orphans whose prediction has arrived since."""

    expired: int
    adopted: int


_MAX_EXAMPLES = 5


class FeedbackStore:
    """Feedback writes and evaluation queries on the worker's PostgreSQL pool; backoff in s."""

    def __init__(
        self,
        database: Database,
        *,
        min_backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        is_stopping: Callable[[], bool] = lambda: False,
        sources: LabelSources | None = None,
        orphan_max: int = 50_000,
    ) -> None:
        self._database = database
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self._is_stopping = is_stopping
        # Which labels evaluations and summaries count (default: HTTP only).
        self.sources = sources or LabelSources()
        self.orphan_max = orphan_max  # orphans held at most (rows); more are refused
        self.retries = 0  # failed write attempts retried, for the metrics
        self._rng = random.Random()  # jitter only, not security

    def _count_retry(self) -> None:
        self.retries += 1

    async def write(self, items: Sequence[ParsedFeedback]) -> FeedbackReport:
        """Store a batch of Kafka labels (source ``kafka``) in one statement; SinkError on
        failure. The first label of a request_id wins, in the batch and across batches.

        Orphans are stored while fewer than ``orphan_max`` are held, the rest returned in
        ``overflow``. The statement runs under an advisory lock, so workers writing at
        once cannot together go past the bound.
        """
        first, later = _first_of_each(items)
        if not first:
            return FeedbackReport()
        winners = list(first.values())
        rows = await self._fetch(
            _WRITE,
            [item.request_id for item in winners],
            [item.label for item in winners],
            [item.observed_at for item in winners],
            int(self.orphan_max),
            what=f"writing {len(winners)} feedback labels",
            lock=ORPHAN_LOCK_ID,
        )
        overflow = [first[row["request_id"]] for row in rows if row["overflow"]]
        report = _tally(first, later, [row for row in rows if not row["overflow"]])
        return replace(report, overflow=overflow)

    async def attach(
        self, items: Sequence[ParsedFeedback], principal: str, models: frozenset[str] | None
    ) -> FeedbackReport:
        """Store HTTP labels of ``principal`` (source ``http:<principal>``), each only if its
        request has a stored prediction of a model in ``models`` (None: any); one statement,
        one attempt, SinkError on failure. Refused items come back in ``missing`` and
        ``out_of_scope``. The first trusted label of a request_id wins; one from a source
        not trusted (``self.sources``) is replaced.
        """
        first, later = _first_of_each(items)
        if not first:
            return FeedbackReport()
        winners = list(first.values())
        rows = await self._fetch(
            _ATTACH,
            [item.request_id for item in winners],
            [item.label for item in winners],
            [item.observed_at for item in winners],
            http_source(principal),
            None if models is None else sorted(models),
            self.sources.like_patterns,
            what=f"attaching {len(winners)} feedback labels",
        )
        missing = [first[r["request_id"]] for r in rows if not r["found"]]
        out_of_scope = [
            first[r["request_id"]]
            for r in rows
            if r["found"] and models is not None and r["model"] not in models
        ]
        refused = {item.request_id for item in (*missing, *out_of_scope)}
        kept = [r for r in rows if r["request_id"] not in refused]
        later = [item for item in later if item.request_id not in refused]
        report = _tally(first, later, kept)
        return replace(report, missing=missing, out_of_scope=out_of_scope)

    async def write_until_done(self, items: Sequence[ParsedFeedback]) -> FeedbackReport:
        """:meth:`write`, retrying outages with capped, jittered backoff until it succeeds.

        Safe to retry: a label stored by an attempt whose answer was lost is a duplicate
        of itself the next time (counted as a duplicate, never stored twice). Raises
        SinkError at once for a failure no retry mends, and for a failed attempt while the
        worker is stopping (no retry then: the labels stay unacknowledged on the topic).
        A stopping worker still makes the attempt: a write takes milliseconds, and every
        batch written is one the next owner need not read again.
        """

        def stopping(exc: BaseException) -> BaseException | None:
            if not self._is_stopping():
                return None
            error = SinkError(f"stopping; {len(items)} feedback labels were not written: {exc}")
            error.__cause__ = exc.__cause__  # the driver's error, as the outage's
            return error

        return await retry_outages(
            lambda: self.write(items),
            is_outage=lambda exc: isinstance(exc, SinkError) and is_transient(exc.__cause__),
            backoff=Backoff(self.min_backoff_s, self.max_backoff_s, self._rng),
            on_retry=logged_retry(
                log, f"Writing {len(items)} feedback labels failed", self._count_retry
            ),
            stopping=stopping,
        )

    async def expire_orphans(self, ttl_s: float, limit: int = 10_000) -> OrphanCleanup:
        """Delete up to ``limit`` orphans stored more than ``ttl_s`` seconds ago, oldest first.

        One statement: an old orphan whose prediction has arrived since is kept and no
        longer flagged (adopted); the others are deleted. SinkError on failure.
        """
        rows = await self._fetch(
            _EXPIRE_ORPHANS, float(ttl_s), int(limit), what="expiring orphan feedback"
        )
        return OrphanCleanup(int(rows[0]["expired"]), int(rows[0]["adopted"]))

    async def evaluate(
        self, model: str, window: int, min_per_class: int = AUC_MIN_PER_CLASS
    ) -> list[VariantMetrics]:
        """Metrics per (version, variant) of ``model`` over its latest ``window`` labelled rows.

        Served predictions give variants champion and challenger, shadow predictions the
        variant ``shadow``; "latest" is by predicted_at. AUC is None below
        ``min_per_class`` labels of either class. Ordered by version, then variant.
        """
        rows = await self._fetch(
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
                _discard_if_broken(conn, exc)
                raise
        return True

    async def paired_summary(
        self, model: str, champion: str, challenger: str, since: float
    ) -> PairedSummary:
        """Sums of d = 0-1 loss of ``champion`` minus that of ``challenger`` over pairs.

        A pair is a labelled request served by ``champion`` (variant champion) and scored
        in shadow by ``challenger``, received at or after ``since`` (epoch seconds).
        """
        rows = await self._fetch(
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
        rows = await self._fetch(
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

    async def _fetch(self, query: str, *args: Any, what: str, lock: int | None = None) -> list[Any]:
        """Rows of one statement on a pooled connection; SinkError naming ``what`` on failure.

        With ``lock``, the statement runs in a transaction holding that advisory lock.
        The SinkError's cause is the driver's error, for ``is_transient``.
        """
        try:
            async with self._database.connection() as conn:
                try:
                    if lock is None:
                        rows: list[Any] = await conn.fetch(query, *args)
                    else:
                        async with conn.transaction():
                            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
                            rows = await conn.fetch(query, *args)
                except BaseException as exc:
                    _discard_if_broken(conn, exc)
                    raise
        except SinkError as exc:
            raise SinkError(f"{what} failed: {exc}") from (exc.__cause__ or exc)
        return rows


def _first_of_each(
    items: Sequence[ParsedFeedback],
) -> tuple[dict[str, ParsedFeedback], list[ParsedFeedback]]:
    """The first item of each request_id (in order), and the later ones."""
    first: dict[str, ParsedFeedback] = {}
    later: list[ParsedFeedback] = []
    for item in items:
        if item.request_id in first:
            later.append(item)
        else:
            first[item.request_id] = item
    return first, later


def _tally(
    first: Mapping[str, ParsedFeedback], later: Sequence[ParsedFeedback], rows: Sequence[Any]
) -> FeedbackReport:
    """Written, duplicates, conflicts and orphans of the rows a write statement returned."""
    kept: dict[str, int] = {}
    written = orphans = 0
    refused: list[ParsedFeedback] = []
    for row in rows:
        item = first[row["request_id"]]
        if row["inserted"]:
            written += 1
            orphans += bool(row.get("orphan"))
            kept[item.request_id] = item.label
        else:
            # Stored before (stored_label), or by a concurrent writer since the
            # statement's snapshot (None: the label kept is not known here).
            stored = row["stored_label"]
            kept[item.request_id] = item.label if stored is None else int(stored)
            refused.append(item)
    refused.extend(item for item in later if item.request_id in kept)
    conflicts = [item for item in refused if item.label != kept[item.request_id]]
    examples = [(c.request_id, kept[c.request_id], c.label) for c in conflicts[:_MAX_EXAMPLES]]
    return FeedbackReport(written, len(refused), len(conflicts), orphans, examples)


def _discard_if_broken(conn: Any, exc: BaseException) -> None:
    """Terminate ``conn`` unless ``exc`` blames the data: a statement cut short (server
    killed, cancelled) can leave asyncpg's protocol state confused on an open connection."""
    if not is_data_error(exc):
        conn.terminate()
