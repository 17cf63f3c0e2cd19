"""Drift agents: served predictions into windowed histograms, closed windows into reports.

``drift-collector`` bins each batch of served champion predictions per model version and
sends one counts record per version to ``drift-counts`` (keyed ``model/version``).
``drift-windows`` adds the counts into the tumbling ``drift_windows`` table, one event at a
time (Faust writes a table only inside the event's own iteration), and closes a window
(and deletes it from the table) once counts arrive from a window a full window after its
end; counts of a window already closed are left out (``phoenix_drift_late_counts_total``).
That logic is ``drift.keeper.DriftWindowKeeper`` (the close rule alone is
``drift.windows.PendingWindows``); this module decodes and checks the counts records and
publishes what the keeper reports. The monitor tests a closed window, and the
report goes to the ``drift`` topic, PostgreSQL and Prometheus; an alarm asks for one
retraining (``retrain`` topic, deduplicated by its trigger id) when
``PHOENIX_AUTO_RETRAIN`` is on. Both run under the one failure policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from phoenix_stream.drift.counts import count_predictions, decode_counts
from phoenix_stream.drift.keeper import DriftWindowKeeper
from phoenix_stream.drift.metrics_export import DriftMetrics
from phoenix_stream.drift.report import DriftReport
from phoenix_stream.exceptions import ShuttingDown, ValidationError
from phoenix_stream.lifecycle.retrain_request import RetrainRequest
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.messages.validation import load_json
from phoenix_stream.storage.drift import DriftStore
from phoenix_stream.streaming.consumers import ConsumerSpec, Taken, register_consumer
from phoenix_stream.tables.drift import FaustWindowCounts, drift_tables

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

log = logging.getLogger(__name__)


def _summary(report: DriftReport) -> dict[str, Any]:
    """A drift report small enough to travel in a retrain request."""
    return {
        "model": report.model,
        "version": report.version,
        "window_start": report.window_start,
        "window_end": report.window_end,
        "n": report.n,
        "consecutive": report.consecutive,
        "drifted": report.drifted_features(),
        "trigger_id": report.trigger_id,
    }


def _prediction_or_nothing(record: InRecord) -> list[dict[str, Any]]:
    # Nothing to dead-letter here: the sink dead-letters what is not a prediction.
    try:
        value = load_json(record.value or b"")
    except ValueError:
        return []
    return [value] if isinstance(value, dict) else []


def register(app: PhoenixApp) -> None:
    """The drift agents, and the drift tables they own."""
    settings = app.settings
    window_s = settings.drift_window_s
    tables = drift_tables(app)
    drift_windows, drift_monitors = tables.windows, tables.monitors

    runtime = app.runtime

    async def count(taken: Sequence[Taken[dict[str, Any]]]) -> Sequence[OutRecord]:
        """Bin served champion predictions per version; one counts record per version."""
        predictions = [prediction for _, prediction in taken]
        references = runtime.drift_references
        await references.prepare(
            {(str(p.get("model")), str(p.get("version"))) for p in predictions}
        )
        topic = settings.topic("drift-counts")
        return [
            OutRecord(topic, batch.key.encode(), batch.encode())
            for batch in count_predictions(predictions, references)
        ]

    register_consumer(
        app,
        ConsumerSpec(
            name="drift-collector",
            topic=app.phoenix_topics.predictions,
            decode=_prediction_or_nothing,
            handle=count,
            take=settings.take_max,
            within_s=settings.take_within_ms / 1000.0,
        ),
    )

    @app.agent(app.phoenix_topics.drift_counts, name="phoenix.drift-windows")
    async def drift_window_agent(stream: Any) -> None:
        """Add counts into the current window; close the previous window when time moves on."""
        # drift-counts has the tables' partition count (TopicDeclarations creates it before
        # the consumer subscribes): every table write relies on that co-partitioning.
        store = DriftStore(runtime.database)
        exported = DriftMetrics()
        policy = runtime.failure_policy("drift-windows")

        async def handle(records: Sequence[InRecord]) -> None:
            for record in records:
                try:
                    batch = decode_counts(record.value)
                except ValidationError as exc:
                    dead = runtime.dead_letters.record(
                        record, "invalid_drift_counts", str(exc), field=exc.field
                    )
                    await runtime.emitter.emit([dead])
                    continue
                # A version not in the registry would grow the tables and the metrics with
                # names anyone can write: refused here, by name.
                if batch.version not in runtime.registry.versions(batch.model):
                    reason = f"no model {batch.model!r} version {batch.version!r} in the registry"
                    dead = runtime.dead_letters.record(
                        record, "invalid_drift_counts", reason, field="model"
                    )
                    await runtime.emitter.emit([dead])
                    continue
                # Counts of another shape than the version's bins would break the window they
                # land in (and every good record after them): refused here, by name.
                await runtime.drift_references.prepare([(batch.model, batch.version)])
                bins = runtime.drift_references.bins(batch.model, batch.version)
                expected = None if bins is None else bins.reference_counts.shape
                if expected is not None and batch.counts.shape != expected:
                    reason = (
                        f"counts must be {expected[0]} x {expected[1]} for {batch.key}, "
                        f"not {batch.counts.shape[0]} x {batch.counts.shape[1]}"
                    )
                    dead = runtime.dead_letters.record(
                        record, "invalid_drift_counts", reason, field="counts"
                    )
                    await runtime.emitter.emit([dead])
                    continue
                now = record.timestamp or time.time()
                await keeper.add(batch.key, batch.model, batch.version, batch.counts, now)

        async def _publish(report: DriftReport) -> None:
            # Only the newly stored: a window closed again (a replay after a crash, a second
            # owner) is not counted twice (DriftMetrics' contract).
            exported.publish(await store.record([report]))
            out = [OutRecord(settings.topic("drift"), report.model.encode(), report.encode())]
            if report.alarm:
                log.warning(
                    "drift alarm %s: %s drifted in %d windows in a row",
                    report.trigger_id,
                    ", ".join(report.drifted_features()),
                    report.consecutive,
                )
            if settings.auto_retrain and report.alarm:
                # One request per alarm (a replayed window repeats it: the job runs a trigger
                # once). It learns from the traffic after the alarm's window: what came
                # before is the world that drifted away, and in a gradual shift the way there.
                request = RetrainRequest(
                    model=report.model,
                    reason=f"drift alarm: {', '.join(report.drifted_features())}",
                    requested_at=time.time(),
                    actor="drift-monitor",
                    trigger_id=report.trigger_id,
                    report=_summary(report),
                    data_since=report.window_end,
                )
                topic = settings.topic("retrain")
                out.append(
                    OutRecord(
                        topic, report.model.encode(), request.seal(runtime.control_auth, topic)
                    )
                )
            await runtime.emitter.emit(out)

        keeper = DriftWindowKeeper(
            FaustWindowCounts(drift_windows, window_s),
            drift_monitors,
            runtime.drift_references,
            window_s,
            _publish,
        )
        policy.watch.attach(stream)
        async for event in stream.events():  # one at a time: table writes need the event
            record = InRecord.of(event.message)
            try:
                with policy.watch.holding([record]):
                    await policy.run([record], handle)
            except ShuttingDown as exc:  # left unacked; ending beats a restart mid-stop
                log.warning("%s; the agent ends with the stop", exc)
                return
