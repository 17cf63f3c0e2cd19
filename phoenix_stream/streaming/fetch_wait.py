"""The consumer's fetch wait: short while the broker delivers, longer while it starves.

A fetch names each partition with its position; the broker answers with records and
the partition's high-water mark. A partition is *starved* when two answers in a row,
asked at the same offset, have no records for it although its high-water mark is above
that offset: records wait and are not sent.

On Tansu 0.6 under CPU contention this is what stopped the gradual drift scenario: a
worker fetched ``drift-counts[0]`` at one offset for minutes, about five times a second,
and every answer came back empty while the broker held 10,000 records past it (the
stall watch made the worker exit; the next owner fetched at that offset and got nothing
either). A plain consumer asking at that offset on that broker got nothing with a 10 ms
wait, a few hundred records with 25 ms, about 1,500 with 50 ms and Tansu's 5 MiB
maximum with 200 ms; with the machine idle, 10 ms is enough. Why Tansu's answer depends
on the wait so is not established (its fetch loops over the partitions until the wait is
over or data is found, with one byte budget for the whole request). Kafka answers as
soon as ``fetch_min_bytes`` is there, whatever the wait, so on Kafka a starved
partition is rare (an answer filled by other partitions first) and a longer wait costs
nothing while data flows.

So the wait is the configured one (``PHOENIX_FETCH_MAX_WAIT_MS``, short for latency)
while fetches deliver, doubles after each fetch that starves a partition (up to
``MAX_WAIT_MS``), and halves back after each fetch that starves none.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

# Longest wait the consumer asks for, milliseconds: enough for Tansu to send its
# maximum under contention (200 ms did in the measurement above), well under the
# request timeout, and short enough that a quiet topic's records wait at most this.
MAX_WAIT_MS = 1000


@dataclass(frozen=True)
class PartitionAnswer:
    """What one fetch answered for one partition: asked at ``offset``, records or not."""

    offset: int
    delivered: bool  # records (or an error) came back for it
    highwater: int | None  # the high-water mark in the answer, None if not known

    @property
    def empty_with_records_waiting(self) -> bool:
        return not self.delivered and self.highwater is not None and self.highwater > self.offset


@dataclass
class FetchWait:
    """The wait to ask for in the next fetch, milliseconds, from what the fetches got.

    A partition is starved when two answers in a row at the same offset brought nothing
    though records waited. One such answer is no sign: Tansu reads the high-water mark
    after the records, so records written in between make an answer look short.
    """

    base_ms: int
    max_ms: int = MAX_WAIT_MS
    current_ms: int = field(init=False)
    _empty_at: dict[Hashable, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.max_ms = max(self.max_ms, self.base_ms)
        self.current_ms = self.base_ms

    def after_fetch(self, answers: Mapping[Hashable, PartitionAnswer]) -> list[Hashable]:
        """The partitions this fetch starved; sets the next wait: doubled after a fetch
        that starved some (a wait of 0 grows to 10 ms), else halved toward the base."""
        starved = []
        for partition, answer in answers.items():
            if not answer.empty_with_records_waiting:
                self._empty_at.pop(partition, None)
            elif self._empty_at.get(partition) == answer.offset:
                starved.append(partition)
            else:
                self._empty_at[partition] = answer.offset
        if starved:
            grown = self.current_ms * 2 if self.current_ms else 10
            self.current_ms = min(self.max_ms, max(grown, self.base_ms + 1))
        else:
            self.current_ms = max(self.base_ms, self.current_ms // 2)
        return starved
