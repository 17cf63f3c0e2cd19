"""The drift tables: per model version, binned histograms in tumbling windows, and monitors.

``drift_windows`` holds, per key ``model/version`` and window of ``PHOENIX_DRIFT_WINDOW_S``
seconds (Kafka timestamps of the counts records), ``{"counts": (F+1) x B ints, "n": rows}``:
memory is windows x versions x (F+1) x B integers whatever the request rate. The agent
deletes a window (with a changelog tombstone) once it closes it, and writes no counts for a
window already closed. Faust's expiry is off: it runs on the wall clock, so it deleted the
windows that a worker restarted after more than the expiry read again before it could
close them (reported with a fraction of their rows), and it never reaches windows
recovered from the changelog anyway (faust #385). ``drift_monitors`` holds, per key, the windows
not closed yet and the monitor's run of drifted windows, so that a restarted or rebalanced
worker resumes where the previous owner stopped. Both are written only by the drift-windows
agent, from the drift-counts topic, which is co-partitioned with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp


@dataclass(frozen=True)
class DriftTables:
    """The two tables of one app (Faust tables are typed ``Any`` here: their windowed
    views have no public types)."""

    windows: Any
    monitors: Any


class FaustWindowCounts:
    """``drift.keeper.WindowCounts`` on the tumbling ``drift-windows`` table.

    Faust places a write, and ``current()``, in the window of the event being processed:
    the agent calls these only inside that event's iteration, with ``now`` its timestamp.
    """

    def __init__(self, table: Any, window_s: float) -> None:
        self.table = table
        self.window_s = float(window_s)

    def current(self, key: str, now: float) -> dict[str, Any]:
        return dict(self.table[key].current())

    def put(self, key: str, now: float, value: dict[str, Any]) -> None:
        self.table[key] = value

    def window(self, key: str, start: float, now: float) -> dict[str, Any]:
        # The window holding ``start + window_s / 2`` (its middle, clear of the edges).
        return dict(self.table[key].delta(now - (start + self.window_s / 2)))

    def forget(self, key: str, up_to_start: float) -> None:
        # With changelog tombstones: the table has no expiry (above), so this is what
        # bounds its memory.
        for stored in list(self.table.table.data.keys()):
            table_key, window_range = stored
            if table_key == key and window_range[0] <= up_to_start:
                del self.table[key][window_range]


def drift_tables(app: PhoenixApp) -> DriftTables:
    """Register the drift tables on ``app``; called once, by the drift agents' registration."""
    settings = app.settings
    # Faust creates the changelogs with PHOENIX_TOPIC_REPLICATION (topic_replication_factor);
    # this gives them the same min.insync.replicas as the app's own topics.
    changelog_configs = {"min.insync.replicas": str(settings.topic_min_insync)}
    windows = app.Table(
        "drift-windows",
        default=dict,
        partitions=settings.topic_partitions,
        extra_topic_configs=changelog_configs,
        key_type=str,  # keys and values travel as JSON (a windowed key is a tuple)
    ).tumbling(timedelta(seconds=settings.drift_window_s))  # no expiry: see above
    monitors = app.Table(
        "drift-monitors",
        default=dict,
        partitions=settings.topic_partitions,
        extra_topic_configs=changelog_configs,
        key_type=str,
    )
    return DriftTables(windows=windows, monitors=monitors)
