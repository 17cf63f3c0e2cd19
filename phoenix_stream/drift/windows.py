"""When a drift window closes: the pending windows of one model version, step by step.

The drift-windows agent adds each counts record into the tumbling window of its Kafka
timestamp. Counts come from every worker's collector, so a window's last counts may
arrive after the next window's first: a window closes only once counts arrive from a
window that starts a full window after its end (``start + 2 * window_s`` or later).
Counts of a window the monitor judged already (read again after a restart, or late) are
left out: a window is reported once. This module holds that rule alone, on the plain JSON
state the agent keeps per key in the ``drift-monitors`` table (``pending``: window starts
not closed yet; ``monitor``: ``DriftMonitor.state()``), so that it is tested without Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WindowStep:
    """What one counts record does to its key's windows.

    ``late``: the record's window was judged already; nothing else happens. Otherwise
    the windows in ``close`` are closed first (oldest first), then the record's counts
    are added to window ``start``, and ``pending`` is what is left open after it.
    """

    start: float
    late: bool
    close: tuple[float, ...]
    pending: tuple[float, ...]


class PendingWindows:
    """The close rule for tumbling windows of ``window_s`` seconds."""

    def __init__(self, window_s: float) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, not {window_s!r}")
        self.window_s = float(window_s)

    def window_start(self, timestamp: float) -> float:
        """The start of the window holding ``timestamp`` (epoch seconds)."""
        return timestamp - timestamp % self.window_s

    def step(self, state: Mapping[str, Any], timestamp: float) -> WindowStep:
        """What a counts record at ``timestamp`` does, given the key's table state."""
        start = self.window_start(timestamp)
        open_starts = {*_starts(state.get("pending")), *_starts([state.get("open_start")])}
        if start < judged_until(state):
            return WindowStep(start, True, (), tuple(sorted(open_starts)))
        close = tuple(sorted(s for s in open_starts if s + 2 * self.window_s <= start))
        pending = tuple(sorted((open_starts - set(close)) | {start}))
        return WindowStep(start, False, close, pending)


def judged_until(state: Mapping[str, Any]) -> float:
    """The end of the last window the key's monitor judged (epoch s), or -inf."""
    monitor = state.get("monitor")
    end = monitor.get("last_window_end") if isinstance(monitor, Mapping) else None
    if isinstance(end, int | float) and not isinstance(end, bool):
        return float(end)
    return float("-inf")


def _starts(value: Any) -> list[float]:
    """Window starts kept in a table value (numbers only; anything else is ignored)."""
    if not isinstance(value, list):
        return []
    return [float(v) for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
