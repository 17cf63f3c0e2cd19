"""The one failure policy of every agent: what happens when handling a batch raises.

Faust restarts a crashed agent but never redelivers the events it held, so one bad
record would park its partition until a rebalance replays it into the same crash
(docs/architecture.md section 7). Every agent therefore hands its batches to ``FailurePolicy.run``:

- an **outage** (``is_transient``: Redis, PostgreSQL or Kafka unreachable) retries the
  whole batch with capped, jittered backoff; it never dead-letters data;
- **anything else** (a bug, an input nobody foresaw) splits the batch in halves until
  the records that fail alone are found; those are dead-lettered as
  ``processing_error`` with the exception, the rest is handled as usual. A poison record
  in a batch of n costs about 2 log2(n) extra handler calls, not n;
- while the worker **stops**, a failure ends the batch with ``ShuttingDown`` (cause
  kept): the events stay unacknowledged and are redelivered to the next owner of the
  partition. The agent loop (``streaming.batches``) then returns instead of crashing:
  Faust's supervisor restarts a crashed agent even during a stop, and the restarted
  agent held the stop up for good (78 s and more, until SIGKILL).

Each failure is counted and logged with the agent, topic, partition and offset.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import aiokafka.errors

from phoenix_stream import metrics
from phoenix_stream.exceptions import (
    FeatureStoreError,
    ProduceError,
    ShuttingDown,
    SinkError,
    Undeliverable,
)
from phoenix_stream.messages.dead_letters import DeadLetters
from phoenix_stream.messages.records import InRecord
from phoenix_stream.retrying import Backoff, retry_outages
from phoenix_stream.streaming.emitter import BatchEmitter
from phoenix_stream.streaming.stalls import AgentWatch

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[InRecord]], Awaitable[None]]
# Whether a SinkError's cause means PostgreSQL is unreachable (``storage.database``'s
# ``is_transient``, given by the runtime: streaming knows no database driver).
StoreOutage = Callable[[BaseException | None], bool]


def is_transient(exc: BaseException, store_outage: StoreOutage) -> bool:
    """True when ``exc`` means a dependency is unreachable, so the same batch may succeed later."""
    if isinstance(exc, Undeliverable):
        return False
    if isinstance(exc, ProduceError | FeatureStoreError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, SinkError):
        return store_outage(exc.__cause__)
    return isinstance(exc, aiokafka.errors.KafkaError) and bool(exc.retriable)


class FailurePolicy:
    """Runs an agent's handler over a batch: retries outages, isolates and dead-letters bugs."""

    def __init__(
        self,
        agent: str,
        emitter: BatchEmitter,
        dead_letters: DeadLetters,
        *,
        is_stopping: Callable[[], bool],
        store_outage: StoreOutage,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        watch: AgentWatch | None = None,
    ) -> None:
        self.agent = agent
        # Each agent's counters exist from its start: a first failure shows in rate().
        metrics.AGENT_RETRIES.labels(agent=agent)
        metrics.PROCESSING_ERRORS.labels(agent=agent)
        # The agent's stall watch: its loop marks the batches it holds, a retry is progress.
        self.watch = watch if watch is not None else AgentWatch(agent)
        self._emitter = emitter
        self._dead_letters = dead_letters
        self._is_stopping = is_stopping
        self._store_outage = store_outage
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s

    async def run(self, records: Sequence[InRecord], handle: Handler) -> None:
        """Handle ``records``; returns once each one is handled or dead-lettered."""
        if not records:
            return
        stop: list[ShuttingDown] = []  # the error raised for a stop, told from the handler's

        def stopping(exc: BaseException) -> BaseException | None:
            if self._is_stopping():
                stop.append(self._shutting_down(records, exc))
                return stop[-1]
            return None

        def report(exc: BaseException, failures: int, delay: float) -> None:
            metrics.AGENT_RETRIES.labels(agent=self.agent).inc()
            self.watch.progress()
            log.warning(
                "%s: %d records from %s failed on an outage (%r); retrying in %.1f s",
                self.agent,
                len(records),
                _where(records),
                exc,
                delay,
            )

        try:
            await retry_outages(
                lambda: handle(records),
                is_outage=lambda exc: is_transient(exc, self._store_outage),
                backoff=Backoff(self._min_backoff_s, self._max_backoff_s),
                on_retry=report,
                stopping=stopping,
            )
            return
        except Exception as exc:
            if stop and exc is stop[-1]:
                raise
            if self._is_stopping():
                # Leave the events unacked: the next owner gets them again.
                raise self._shutting_down(records, exc) from exc
            failure = exc
        if len(records) == 1:
            await self._dead_letter(records[0], failure)
            return
        middle = len(records) // 2
        await self.run(records[:middle], handle)
        await self.run(records[middle:], handle)

    def _shutting_down(self, records: Sequence[InRecord], exc: BaseException) -> ShuttingDown:
        return ShuttingDown(
            f"{self.agent}: stopping; {len(records)} records from "
            f"{_where(records)} left unacknowledged ({exc!r})"
        )

    async def _dead_letter(self, record: InRecord, exc: BaseException) -> None:
        metrics.PROCESSING_ERRORS.labels(agent=self.agent).inc()
        log.error(
            "%s: record %s failed and is dead-lettered as processing_error: %r",
            self.agent,
            _where([record]),
            exc,
            exc_info=exc,
        )
        error = f"{type(exc).__name__}: {exc}"
        await self._emitter.emit([self._dead_letters.record(record, "processing_error", error)])


def _where(records: Sequence[InRecord]) -> str:
    first, last = records[0], records[-1]
    if len(records) == 1:
        return f"{first.topic}[{first.partition}]@{first.offset}"
    return f"{first.topic}[{first.partition}]@{first.offset} .. [{last.partition}]@{last.offset}"
