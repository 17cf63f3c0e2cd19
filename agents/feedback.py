"""Feedback agent: true outcomes into PostgreSQL, plus the periodic evaluation and cleanup.

The agent reads ``feedback`` records raw (one item or a JSON list of items, keyed by
request_id), dead-letters what is not valid feedback (``invalid_json``, ``too_large``,
``batch_too_large``, ``invalid_feedback``, field named) and writes the rest in batches
through :class:`~phoenix_stream.storage.feedback.FeedbackStore`, acked after the write
(retried through outages). The first label of a request wins; duplicates, conflicting
labels and orphans (no stored prediction yet) are counted. Orphans are held up to
``PHOENIX_FEEDBACK_ORPHAN_MAX``; a label beyond it is dead-lettered as ``orphan_overflow``
(field ``request_id``) and counted, so the sender can see it and send it again once its
prediction is stored. Labels from this topic have source ``kafka``. Two timers of this worker:
every ``PHOENIX_EVALUATION_INTERVAL_S`` each model is evaluated (gauges set, one row per
(version, variant) stored in ``evaluations``), and orphans older than
``PHOENIX_FEEDBACK_ORPHAN_TTL_S`` are deleted. Neither is ever fatal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from phoenix_stream import metrics
from phoenix_stream.exceptions import PhoenixError
from phoenix_stream.lifecycle import evaluation
from phoenix_stream.lifecycle.feedback import ParsedFeedback, decode_feedback
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.messages.validation import Rejected
from phoenix_stream.storage.feedback import FeedbackReport
from phoenix_stream.streaming.consumers import ConsumerSpec, Taken, register_consumer

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

log = logging.getLogger(__name__)

# Conflicting labels are logged at most this often, seconds (counted always).
CONFLICT_LOG_EVERY_S = 60.0
# Orphans one sweep statement looks at, rows; a sweep runs as many statements as the
# orphan bound needs, so it always clears every expired orphan.
ORPHAN_SWEEP_ROWS = 10_000


class _ConflictLog:
    """Logs conflicting labels once in a while with the count since the last line."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._pending = 0
        self._last = float("-inf")

    def add(self, report: FeedbackReport, now: float) -> None:
        self._pending += report.conflicts
        if not self._pending or now - self._last < self.every_s:
            return
        log.warning(
            "%d feedback labels conflicted with the label already stored (first wins), "
            "e.g. (request_id, kept, refused): %s",
            self._pending,
            report.conflict_examples or "none in the latest batch",
        )
        self._pending = 0
        self._last = now


def register(app: PhoenixApp) -> None:
    """The ``phoenix.feedback`` agent, and its evaluation and orphan-sweep timers."""
    settings = app.settings
    # Orphans are looked for a few times per TTL, at most once a minute, seconds.
    orphan_sweep_s = min(60.0, max(1.0, settings.feedback_orphan_ttl_s / 4))
    orphan_sweep_statements = settings.feedback_orphan_max // ORPHAN_SWEEP_ROWS + 2
    conflicts = _ConflictLog(CONFLICT_LOG_EVERY_S)

    runtime = app.runtime
    store = runtime.feedback

    def decode(record: InRecord) -> Iterable[ParsedFeedback | Rejected]:
        return decode_feedback(
            record.value,
            now=time.time(),
            max_bytes=settings.max_record_bytes,
            max_batch=settings.max_batch_requests,
        )

    async def write(taken: Sequence[Taken[ParsedFeedback]]) -> Sequence[OutRecord]:
        origin: dict[str, InRecord] = {}  # request_id -> its record, for an overflow letter
        for record, item in taken:
            origin.setdefault(item.request_id, record)
        report = await store.write_until_done([item for _, item in taken])
        metrics.FEEDBACK_ROWS.inc(report.written)
        metrics.FEEDBACK_DUPLICATES.inc(report.duplicates)
        metrics.FEEDBACK_CONFLICTS.inc(report.conflicts)
        metrics.FEEDBACK_ORPHANS.inc(report.orphans)
        metrics.FEEDBACK_LABEL_DELAY.observe_many(report.label_delays)
        metrics.FEEDBACK_ORPHANS_REFUSED.inc(len(report.overflow))
        conflicts.add(report, time.time())
        return [
            runtime.dead_letters.record(
                origin[item.request_id],
                "orphan_overflow",
                f"no stored prediction for this request, and {store.orphan_max} labels "
                "without one are held already (PHOENIX_FEEDBACK_ORPHAN_MAX)",
                field="request_id",
                original=None if item.batch_index is None else item.to_json(),
                batch_index=item.batch_index,
            )
            for item in report.overflow
        ]

    register_consumer(
        app,
        ConsumerSpec(
            name="feedback",
            topic=app.phoenix_topics.feedback,
            decode=decode,
            handle=write,
            take=settings.sink_batch,
            within_s=settings.sink_within_ms / 1000.0,
        ),
    )

    async def evaluate_models() -> None:
        """Evaluate every model: set the gauges and store the evaluation (about once per period)."""
        for model in runtime.deployments.names():
            try:
                results = await runtime.evaluations.evaluate(model, settings.evaluation_window)
                evaluation.publish(model, results)
                await runtime.evaluations.record_evaluation(
                    model,
                    results,
                    settings.evaluation_window,
                    min_gap_s=settings.evaluation_interval_s / 2,
                )
            except PhoenixError as exc:  # PostgreSQL down: the next period tries again
                log.warning("Evaluating %s failed: %s", model, exc)
            except Exception:
                # A bug must not end the timer: Faust would crash the worker with it.
                log.exception("Evaluating %s failed unexpectedly", model)

    async def expire_orphan_feedback() -> None:
        """Delete feedback that found no prediction within the TTL, every expired one.

        Bounded statements of ``ORPHAN_SWEEP_ROWS`` until one finds fewer: at most
        ``orphan_sweep_statements``, enough for ``PHOENIX_FEEDBACK_ORPHAN_MAX`` orphans.
        """
        expired = adopted = 0
        try:
            for _ in range(orphan_sweep_statements):
                swept = await app.runtime.feedback.expire_orphans(
                    settings.feedback_orphan_ttl_s, ORPHAN_SWEEP_ROWS
                )
                expired += swept.expired
                adopted += swept.adopted
                if swept.expired + swept.adopted < ORPHAN_SWEEP_ROWS:
                    break
        except PhoenixError as exc:
            log.warning("Expiring orphan feedback failed: %s", exc)
        except Exception:
            log.exception("Expiring orphan feedback failed unexpectedly")  # the timer goes on
        metrics.FEEDBACK_ORPHANS_EXPIRED.inc(expired)
        if expired:
            log.info(
                "Deleted %d orphan feedback labels older than %.0f s (%d found their prediction)",
                expired,
                settings.feedback_orphan_ttl_s,
                adopted,
            )

    # Registered by call, not as decorators: Faust's timer decorator is untyped.
    app.timer(settings.evaluation_interval_s, name="phoenix.evaluate_models")(evaluate_models)
    app.timer(orphan_sweep_s, name="phoenix.expire_orphan_feedback")(expire_orphan_feedback)
