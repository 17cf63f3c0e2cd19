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

from datetime import timedelta
from typing import Any

from phoenix_stream.app import app, settings

# Faust creates the changelogs with PHOENIX_TOPIC_REPLICATION (topic_replication_factor);
# this gives them the same min.insync.replicas as the app's own topics.
_CHANGELOG_CONFIGS = {"min.insync.replicas": str(settings.topic_min_insync)}

drift_windows: Any = app.Table(
    "drift-windows",
    default=dict,
    partitions=settings.topic_partitions,
    extra_topic_configs=_CHANGELOG_CONFIGS,
    key_type=str,  # keys and values travel as JSON (a windowed key is a tuple)
).tumbling(timedelta(seconds=settings.drift_window_s))  # no expiry: see above

drift_monitors: Any = app.Table(
    "drift-monitors",
    default=dict,
    partitions=settings.topic_partitions,
    extra_topic_configs=_CHANGELOG_CONFIGS,
    key_type=str,  # keys and values travel as JSON (a windowed key is a tuple)
)
