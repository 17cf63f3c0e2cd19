"""Feedback in PostgreSQL, joined to predictions (the evaluations are ``storage.evaluations``).

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

from phoenix_stream import metrics
from phoenix_stream.exceptions import SinkError
from phoenix_stream.lifecycle.feedback import ParsedFeedback
from phoenix_stream.lifecycle.label_sources import LabelSources, http_source
from phoenix_stream.retrying import Backoff, logged_retry, retry_outages
from phoenix_stream.storage.database import Database, fetch, is_transient

__all__ = [
    "ORPHAN_LOCK_ID",
    "FeedbackReport",
    "FeedbackStore",
    "OrphanCleanup",
]

log = logging.getLogger(__name__)

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
    SELECT i.*, p.request_id IS NOT NULL AS joined,
           extract(epoch FROM now() - p.predicted_at)::float8 AS delay_s,
           EXISTS (SELECT 1 FROM feedback f WHERE f.request_id = i.request_id) AS stored
    FROM incoming i LEFT JOIN predictions p ON p.request_id = i.request_id
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
       coalesce(r.orphan_rank > room.n, false) AS overflow, r.delay_s
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
    SELECT i.*, p.request_id IS NOT NULL AS found, p.model,
           extract(epoch FROM now() - p.predicted_at)::float8 AS delay_s
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
       f.label AS stored_label, k.delay_s
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
    # Seconds from the prediction to its label, for each label stored now with one.
    label_delays: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OrphanCleanup:
    """One cleanup pass: orphans deleted, and orphans whose prediction has arrived since."""

    expired: int
    adopted: int


_MAX_EXAMPLES = 5


class FeedbackStore:
    """Feedback writes on the worker's PostgreSQL pool; backoff in seconds."""

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
        metrics.SINK_RETRIES.inc()  # now, not after the write: an outage shows while it lasts

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
        rows = await fetch(
            self._database,
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
        rows = await fetch(
            self._database,
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
        rows = await fetch(
            self._database,
            _EXPIRE_ORPHANS,
            float(ttl_s),
            int(limit),
            what="expiring orphan feedback",
        )
        return OrphanCleanup(int(rows[0]["expired"]), int(rows[0]["adopted"]))


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
    delays: list[float] = []
    for row in rows:
        item = first[row["request_id"]]
        if row["inserted"]:
            written += 1
            orphans += bool(row.get("orphan"))
            kept[item.request_id] = item.label
            if row.get("delay_s") is not None:
                delays.append(row["delay_s"])
        else:
            # Stored before (stored_label), or by a concurrent writer since the
            # statement's snapshot (None: the label kept is not known here).
            stored = row["stored_label"]
            kept[item.request_id] = item.label if stored is None else int(stored)
            refused.append(item)
    refused.extend(item for item in later if item.request_id in kept)
    conflicts = [item for item in refused if item.label != kept[item.request_id]]
    examples = [(c.request_id, kept[c.request_id], c.label) for c in conflicts[:_MAX_EXAMPLES]]
    return FeedbackReport(
        written, len(refused), len(conflicts), orphans, examples, label_delays=delays
    )
