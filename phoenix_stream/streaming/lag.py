"""Consumer lag: how far the group's committed offsets are behind the broker's logs.

Per partition, lag = high-water mark (the offset the next record will get) minus the
group's committed offset (the next offset the group will read). It counts offsets, not
records: on a compacted topic offsets the cleaner removed are still counted, so the lag
is an upper bound of the records left to read. A partition the group never committed
is read from the log start (``consumer_auto_offset_reset='earliest'``), and so is one
whose committed offset fell below the log start (retention removed those records: the
consumer's reset goes to the earliest one): its lag is the whole partition as the
broker holds it, high-water mark minus log start offset.

Whether the broker's end offsets can be believed is decided by its identity (``trust``):
Apache Kafka names its cluster with a 22-character URL-safe base64 UUID in every
Metadata answer; the embedded Tansu broker answers ``tansu_cluster`` and its end
offsets are wrong (docs/architecture.md section 6), so its lag is not reported at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from phoenix_stream.settings import LagTrust

__all__ = ["LagReport", "group_lag", "partition_lag", "untrusted_reason"]

# Apache Kafka's cluster id: a random UUID, base64 URL-safe without padding (KRaft
# requires this form at `kafka-storage format`; ZooKeeper clusters generate it too).
_KAFKA_CLUSTER_ID = re.compile(r"[A-Za-z0-9_-]{22}")

# (topic, partition)
Partition = tuple[str, int]


def untrusted_reason(trust: LagTrust, cluster_id: str | None) -> str | None:
    """Why the broker's end offsets cannot be trusted, or None when they can.

    ``cluster_id`` is what the broker's Metadata answer names its cluster (None when it
    names none, as Metadata before v2 does); it is only read under ``auto``.
    """
    if trust == "trusted":
        return None
    if trust == "untrusted":
        return "the broker's end offsets cannot be trusted (PHOENIX_LAG_TRUST=untrusted)"
    if cluster_id is not None and _KAFKA_CLUSTER_ID.fullmatch(cluster_id):
        return None
    return (
        f"the broker's end offsets cannot be trusted: its cluster id {cluster_id!r} is not "
        "Apache Kafka's (Tansu answers 'tansu_cluster'); PHOENIX_LAG_TRUST=trusted "
        "overrides"
    )


def partition_lag(end: int, committed: int | None, log_start: int) -> int:
    """Offsets from where the group reads next to ``end`` (the high-water mark).

    ``committed`` is None (or negative, the broker's "no offset") when the group never
    committed: it reads from ``log_start``, as it does when ``committed`` is below it.
    Never negative: an end read before a commit that passed it counts as caught up.
    """
    start = log_start if committed is None or committed < log_start else committed
    return max(0, end - start)


def group_lag(
    ends: Mapping[Partition, int],
    committed: Mapping[Partition, int | None],
    log_starts: Mapping[Partition, int],
) -> dict[str, dict[int, int]]:
    """Topic -> partition -> lag, for every partition in ``ends`` (sorted).

    A partition missing from ``log_starts`` counts its log as starting at offset 0.
    """
    lag: dict[str, dict[int, int]] = {}
    for topic, partition in sorted(ends):
        tp = (topic, partition)
        value = partition_lag(ends[tp], committed.get(tp), log_starts.get(tp, 0))
        lag.setdefault(topic, {})[partition] = value
    return lag


@dataclass(frozen=True)
class LagReport:
    """What ``/ready`` says of the lag: the numbers, or why there are none.

    ``lag`` is None exactly when ``reason`` says why; ``sampled_at`` is the clock's time
    (seconds) of the last successful sample, None before the first.
    """

    lag: dict[str, dict[int, int]] | None
    reason: str | None
    sampled_at: float | None

    def to_json(self, now: float) -> dict[str, object]:
        """The ``lag``, ``lag_reason`` and ``lag_age_s`` fields of ``/ready``."""
        age = None if self.sampled_at is None else round(max(0.0, now - self.sampled_at), 3)
        lag = (
            None
            if self.lag is None
            else {topic: {str(p): n for p, n in parts.items()} for topic, parts in self.lag.items()}
        )
        return {"lag": lag, "lag_reason": self.reason, "lag_age_s": age}
