"""The drift windows of every model version: counts added, windows closed and judged.

The drift-windows agent hands each valid counts record to :class:`DriftWindowKeeper`,
which keeps two tables (both Faust tables in a worker, plain dicts in a unit test):

- ``windows`` (:class:`WindowCounts`): per key ``model/version``, the summed counts and
  record count of each tumbling window;
- ``monitors``: per key, the JSON state of :class:`~phoenix_stream.drift.windows.PendingWindows`
  (windows not closed yet) and of the key's :class:`~phoenix_stream.drift.monitor.DriftMonitor`.

When a counts record arrives from a window a full window after an open one's end, the
open one is closed: its counts are tested against the version's reference, the report
goes to ``publish``, and the window is deleted (the table has no expiry; this is what
bounds its memory). A window judged already (a replay after a restart) is not judged
again, and counts for it are left out (``phoenix_drift_late_counts_total``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Protocol

import numpy as np

from phoenix_stream import metrics
from phoenix_stream.drift.histograms import Bins
from phoenix_stream.drift.monitor import DriftMonitor, DriftRule
from phoenix_stream.drift.report import DriftReport
from phoenix_stream.drift.windows import PendingWindows

log = logging.getLogger(__name__)

Publish = Callable[[DriftReport], Awaitable[None]]


class WindowCounts(Protocol):
    """The windowed counts of each key (``tables.drift.FaustWindowCounts`` in a worker)."""

    def current(self, key: str, now: float) -> dict[str, Any]:
        """The value of the window holding ``now`` (``{}`` when it holds nothing yet)."""

    def put(self, key: str, now: float, value: dict[str, Any]) -> None:
        """Replace the value of the window holding ``now``."""

    def window(self, key: str, start: float, now: float) -> dict[str, Any]:
        """The value of the window that starts at ``start`` (read at ``now``)."""

    def forget(self, key: str, up_to_start: float) -> None:
        """Delete the key's windows that start at ``up_to_start`` or before."""


class References(Protocol):
    """Each version's reference bins (``drift.references.DriftReferences`` in a worker)."""

    rule: DriftRule

    async def prepare(self, keys: Iterable[tuple[str, str]]) -> None:
        """Load the bins of ``(model, version)`` keys not loaded yet."""

    def bins(self, model: str, version: str) -> Bins | None:
        """The version's bins, or None when it cannot be loaded."""


class DriftWindowKeeper:
    """Adds counts into windows and closes each window once, with its report published."""

    def __init__(
        self,
        windows: WindowCounts,
        monitors: MutableMapping[str, Any],
        references: References,
        window_s: float,
        publish: Publish,
    ) -> None:
        self.windows = windows
        self.monitors = monitors
        self.references = references
        self.window_s = float(window_s)
        self.rule = PendingWindows(window_s)
        self.publish = publish

    async def add(self, key: str, model: str, version: str, counts: np.ndarray, now: float) -> None:
        """Add one counts record of ``key`` at ``now`` (its Kafka timestamp, epoch s)."""
        state: dict[str, Any] = dict(self.monitors.get(key) or {})
        step = self.rule.step(state, now)
        if step.late:
            metrics.DRIFT_LATE_COUNTS.labels(model=model).inc()
            return
        for open_start in step.close:
            await self._close(key, model, version, open_start, now, state)
            self.windows.forget(key, open_start)
        state.pop("open_start", None)
        state["pending"] = list(step.pending)
        window = self.windows.current(key, now)
        previous = window.get("counts")
        total = counts if previous is None else np.asarray(previous, np.int64) + counts
        self.windows.put(key, now, {"counts": total.tolist(), "n": int(window.get("n", 0)) + 1})
        self.monitors[key] = state  # reassigned: a mutated value would miss the changelog

    async def _close(
        self, key: str, model: str, version: str, start: float, now: float, state: dict[str, Any]
    ) -> None:
        await self.references.prepare([(model, version)])
        bins = self.references.bins(model, version)
        if bins is None:
            log.warning(
                "drift: %s/%s cannot be loaded; window %s not tested", model, version, start
            )
            return
        closed = self.windows.window(key, start, now)
        counts = np.asarray(closed.get("counts") or np.zeros_like(bins.reference_counts))
        saved = state.get("monitor")
        rule = self.references.rule
        monitor = (
            DriftMonitor.from_state(saved, bins, rule)
            if isinstance(saved, dict)
            else DriftMonitor(model, version, bins, rule)
        )
        if monitor.already_closed(start):
            return  # a replay after a restart: this window was judged already
        report = monitor.close_window(counts, start, start + self.window_s)
        await self.publish(report)
        state["monitor"] = monitor.state()
