"""``LagWatch``: samples the consumer group's lag from the broker, in the background.

Every ``PHOENIX_LAG_INTERVAL_S`` one sample asks the broker, over its own aiokafka
clients (never Faust's consumer, which lives in another thread's loop):

- once, under ``PHOENIX_LAG_TRUST=auto``, the cluster id (a Metadata request), which
  decides whether the broker's end offsets are trusted (``lag.untrusted_reason``);
- the group's committed offsets of the worker's assigned partitions of the app's topics
  (one OffsetFetch to the group coordinator, found once);
- their high-water marks and log start offsets (one ListOffsets request per partition
  leader for each, aiokafka's ``end_offsets`` and ``beginning_offsets``).

A sample is bounded (``timeout_s``); one that fails or times out leaves the last
successful sample's time and says why, and the clients are opened again at the next
one. It never raises and never blocks the loop. Each sample sets the
``phoenix_consumer_lag_records`` gauges (and removes the series of partitions no longer
assigned) and ``phoenix_consumer_lag_trusted``; ``report`` is read by ``/ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from mode import Service

from phoenix_stream import metrics
from phoenix_stream.settings import LagTrust
from phoenix_stream.streaming.kafka_auth import KafkaAuth, client_options
from phoenix_stream.streaming.lag import LagReport, Partition, group_lag, untrusted_reason

__all__ = ["SAMPLE_TIMEOUT_S", "LagWatch", "assigned_partitions"]

log = logging.getLogger(__name__)

# A sample (all its requests) gives up after this long, seconds.
SAMPLE_TIMEOUT_S = 5.0
_NOT_YET = "not sampled yet"

Clock = Callable[[], float]


def assigned_partitions(app: Any) -> list[Partition]:
    """The partitions Faust's consumer is assigned now (none before it started).

    ``Consumer.assignment()`` is Faust's public API; it reads aiokafka's subscription
    state, a plain set, so it is safe from the web thread's loop.
    """
    try:
        return [(tp.topic, tp.partition) for tp in app.consumer.assignment()]
    except Exception:  # not started yet, or stopping: nothing assigned to report
        return []


class LagWatch(Service):
    """The group's lag on the assigned partitions of ``topics``, sampled every
    ``interval_s`` seconds; ``report`` holds the latest answer."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: Collection[str],
        assigned: Callable[[], Iterable[Partition]],
        *,
        trust: LagTrust,
        interval_s: float,
        timeout_s: float = SAMPLE_TIMEOUT_S,
        clock: Clock = time.monotonic,
        auth: KafkaAuth | None = None,
        **kwargs: Any,
    ) -> None:
        self.bootstrap = bootstrap
        self._client_options = client_options(auth) if auth is not None else {}
        self.group_id = group_id
        self.topics = frozenset(topics)
        self.trust = trust
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._assigned = assigned
        self._clock = clock
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._coordinator: int | None = None
        self._distrust: str | None = None  # why the broker is not trusted, once known
        self._identified = trust != "auto"  # only auto needs the cluster id
        self._series: set[tuple[str, str]] = set()
        self._last_failure: str | None = None
        self.report = LagReport(None, _NOT_YET, None)
        super().__init__(**kwargs)

    def to_json(self) -> dict[str, object]:
        """``/ready``'s ``lag``, ``lag_reason`` and ``lag_age_s`` fields."""
        return self.report.to_json(self._clock())

    @Service.task
    async def _sample_every_interval(self) -> None:
        while not self.should_stop:
            await self.sample()
            await self.sleep(self.interval_s)

    async def on_stop(self) -> None:
        """Close the clients (bounded: a broker that is gone must not hold the stop)."""
        await self._close()

    async def sample(self) -> LagReport:
        """Take one sample now; the new ``report`` (also kept). Never raises."""
        if self.trust == "untrusted":
            return self._publish(LagReport(None, untrusted_reason(self.trust, None), None))
        if self._distrust is not None:  # decided once: the broker's identity stays
            return self._publish(LagReport(None, self._distrust, None))
        try:
            report = await asyncio.wait_for(self._sample(), self.timeout_s)
        except TimeoutError:
            report = await self._failed(f"the broker did not answer within {self.timeout_s:g} s")
        except (KafkaError, OSError) as exc:
            report = await self._failed(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug must not end the sampling: logged with its trace
            log.exception("consumer lag sample failed")
            report = await self._failed(f"{type(exc).__name__}: {exc}")
        else:
            if self._last_failure is not None:
                log.info("consumer lag sampled again after: %s", self._last_failure)
            self._last_failure = None
        return self._publish(report)

    async def _sample(self) -> LagReport:
        admin, offsets = await self._open()
        if not self._identified:
            cluster = await admin.describe_cluster()
            cluster_id = cluster.get("cluster_id")
            self._distrust = untrusted_reason(
                self.trust, cluster_id if isinstance(cluster_id, str) else None
            )
            self._identified = True
        if self._distrust is not None:
            await self._close()  # nothing more to ask this broker: no idle connections
            return LagReport(None, self._distrust, None)
        partitions = sorted({tp for tp in self._assigned() if tp[0] in self.topics})
        now = self._clock()
        if not partitions:
            return LagReport({}, None, now)
        tps = [TopicPartition(topic, partition) for topic, partition in partitions]
        if self._coordinator is None:
            self._coordinator = await admin.find_coordinator(self.group_id)
        # Committed first, ends after: an end read later is never behind the commit.
        answered = await admin.list_consumer_group_offsets(
            self.group_id, self._coordinator, partitions=tps
        )
        ends = await offsets.end_offsets(tps)
        starts = await offsets.beginning_offsets(tps)
        committed = {
            (tp.topic, tp.partition): (meta.offset if meta.offset >= 0 else None)
            for tp, meta in answered.items()
        }
        lag = group_lag(
            {(tp.topic, tp.partition): end for tp, end in ends.items()},
            committed,
            {(tp.topic, tp.partition): start for tp, start in starts.items()},
        )
        return LagReport(lag, None, now)

    async def _failed(self, why: str) -> LagReport:
        if why != self._last_failure:
            log.warning("consumer lag not sampled: %s", why)
        self._last_failure = why
        # Clients in an unknown state (a request cut by the timeout) are opened afresh.
        await self._close()
        return LagReport(None, f"lag not sampled: {why}", self.report.sampled_at)

    def _publish(self, report: LagReport) -> LagReport:
        series: set[tuple[str, str]] = set()
        for topic, partitions in (report.lag or {}).items():
            for partition, value in partitions.items():
                labels = (topic, str(partition))
                metrics.CONSUMER_LAG.labels(*labels).set(value)
                series.add(labels)
        for labels in self._series - series:  # revoked, or no longer trusted
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(*labels)
        self._series = series
        metrics.CONSUMER_LAG_TRUSTED.set(0 if report.lag is None else 1)
        self.report = report
        return report

    async def _open(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        timeout_ms = int(self.timeout_s * 1000)
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self.group_id}-lag",
                request_timeout_ms=timeout_ms,
                **self._client_options,
            )
            self._admin = admin  # closed by _close also when its start fails
            await admin.start()
        if self._offsets is None:
            # No group: this consumer only asks for offsets, it never joins or fetches.
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self.group_id}-lag",
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=timeout_ms,
                **self._client_options,
            )
            self._offsets = consumer
            await consumer.start()
        return self._admin, self._offsets

    async def _close(self) -> None:
        admin, offsets = self._admin, self._offsets
        self._admin = self._offsets = None
        self._coordinator = None
        for client in (admin, offsets):
            if client is None:
                continue
            closing = client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop()
            try:
                await asyncio.wait_for(closing, self.timeout_s)
            except (TimeoutError, KafkaError, OSError) as exc:  # a broken client: nothing to save
                log.debug("lag client closed with %r", exc)
