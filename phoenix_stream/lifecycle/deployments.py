"""Deployments: who serves each model, decided on the record and read by every worker.

A decision is a ``DeploymentRecord`` (``deployment_record``) on the compacted
``deployments`` topic, keyed by model. Every worker runs a ``DeploymentBoard``: a plain
consumer that reads the topic from the beginning (no consumer group, so each worker sees
every record), keeps the highest generation of each model, loads the new versions off the
event loop and only then swaps the deployment in, atomically (one dict assignment read
by the predictor per batch). A version that fails to load leaves the previous deployment
serving; the board retries it and reports it in ``/ready``, the
``phoenix_deployment_pending`` metric and the log.

Why not a Faust GlobalTable: a table written by an agent still needs the same
highest-generation rule, and its changelog recovery is where faust-streaming's open
table bugs live (docs/architecture.md section 5); one consumer per worker on a compacted
topic is the same read with fewer moving parts. The audit trail (who, when, why, evidence)
is written to PostgreSQL by the ``deployments`` agent. A tombstone (no value;
``DELETE /v1/deployments/{model}``) changes nothing while a worker runs: it lets
compaction forget a model that is no longer in the registry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from phoenix_stream import metrics
from phoenix_stream.exceptions import UnknownModelError, ValidationError
from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.lifecycle.deployment_record import DeploymentRecord, read_record
from phoenix_stream.retrying import Backoff, retry_outages
from phoenix_stream.serving.models import ServingModels
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.serving.router import Deployment
from phoenix_stream.settings import bootstrap_servers
from phoenix_stream.streaming.kafka_auth import PLAINTEXT, KafkaAuth, client_options

log = logging.getLogger(__name__)


class DeploymentBoard(Service):
    """Every worker's view of the deployments: read from the topic, swapped in once loaded."""

    def __init__(
        self,
        kafka_url: str,
        topic: str,
        models: ServingModels,
        registry: ModelRegistry,
        default: Deployment,
        auth: ControlAuth,
        *,
        fetch_wait_ms: int = 50,
        clock: Callable[[], float] = time.time,
        kafka_auth: KafkaAuth = PLAINTEXT,
        **kwargs: Any,
    ) -> None:
        self._kafka_auth = kafka_auth
        self.kafka_url = kafka_url
        self._auth = auth
        self._clock = clock
        self.topic = topic
        self._models = models
        self._registry = registry
        self._default = DeploymentRecord(default, 0, reason="PHOENIX_* settings at start")
        self._active: dict[str, DeploymentRecord] = {default.model: self._default}
        self._pending: dict[str, DeploymentRecord] = {}
        self._highest: dict[str, int] = {}
        self._settled: dict[str, int] = {}  # model -> newest generation read and tried
        self._fallbacks: dict[str, Deployment] = {}
        self._reported: dict[str, str] = {}  # model -> the load failure last logged
        self._fetch_wait_ms = fetch_wait_ms
        self._consumer: AIOKafkaConsumer | None = None
        self.caught_up = asyncio.Event()  # set once the topic's existing records were read
        self._changed = asyncio.Condition()
        super().__init__(**kwargs)

    # -- reading, for the predictor and the views ---------------------------------------

    def get(self, model: str) -> Deployment | None:
        """Who serves ``model`` now; None when no such model exists."""
        record = self._active.get(model)
        if record is not None:
            return record.deployment
        deployment = self._fallbacks.get(model)
        if deployment is None:
            # Not cached when missing: a model copied into the registry later is found.
            try:
                deployment = Deployment(model, self._registry.latest(model))
            except UnknownModelError:
                return None
            self._fallbacks[model] = deployment
        return deployment

    def record(self, model: str) -> DeploymentRecord | None:
        """The active decision for ``model`` (None for a model served by its latest version)."""
        return self._active.get(model)

    def pending(self) -> dict[str, DeploymentRecord]:
        """Decisions seen but not serving yet (their versions have not loaded)."""
        return dict(self._pending)

    def highest_generation(self, model: str) -> int:
        """The highest generation seen for ``model`` (0 when none)."""
        return self._highest.get(model, 0)

    def names(self) -> list[str]:
        """Every model name that can be served."""
        return sorted({*self._registry.names(), *self._active})

    # -- applying records ----------------------------------------------------------------

    async def apply(self, record: DeploymentRecord) -> bool:
        """Take ``record`` if it is newer than any seen; True when it serves now."""
        model = record.model
        if record.generation <= self._highest.get(model, 0):
            metrics.DEPLOYMENTS_IGNORED.labels(model=model).inc()
            log.info("ignoring %s generation %d: not newer", model, record.generation)
            return False
        self._highest[model] = record.generation
        self._pending[model] = record
        try:
            return await self._activate(model)
        finally:
            self._settled[model] = record.generation
            async with self._changed:
                self._changed.notify_all()

    async def settled(self, model: str, generation: int) -> None:
        """Return once a record of ``model`` at ``generation`` or newer was read and tried.

        Tried: serving now, or waiting for a version that failed to load.
        """
        async with self._changed:
            await self._changed.wait_for(lambda: self._settled.get(model, 0) >= generation)

    async def _activate(self, model: str) -> bool:
        record = self._pending.get(model)
        if record is None:
            return True
        keys = [(model, version) for version in record.versions()]
        await self._models.prepare(keys)
        failures = self._models.failures()
        failed = {key: failures[key].reason for key in keys if key in failures}
        if failed:
            metrics.DEPLOYMENT_PENDING.labels(model=model).set(1)
            said = repr(sorted(failed.items()))
            if self._reported.get(model) == said:
                return False  # retried on the models' delay; logged once per new reason
            self._reported[model] = said
            log.error(
                "%s generation %d cannot serve yet (%s); generation %d keeps serving",
                model,
                record.generation,
                "; ".join(f"{v}: {why}" for (_, v), why in failed.items()),
                self._active[model].generation if model in self._active else 0,
            )
            return False
        self._pending.pop(model, None)
        self._reported.pop(model, None)
        self._active[model] = record  # the swap: the predictor reads it per batch
        self._fallbacks.pop(model, None)
        metrics.DEPLOYMENT_PENDING.labels(model=model).set(0)
        metrics.DEPLOYMENT_GENERATION.labels(model=model).set(record.generation)
        d = record.deployment
        share = d.challenger_share if d.challenger is not None else 0.0
        metrics.DEPLOYMENT_CHALLENGER_SHARE.labels(model=model).set(share)
        metrics.DEPLOYMENT_ROLLOUT_STEP.labels(model=model).set(max(0, record.step + 1))
        log.info(
            "%s generation %d serving: champion %s, challenger %s, %s at %.1f %% (%s: %s)",
            model,
            record.generation,
            d.champion,
            d.challenger,
            d.strategy,
            100 * d.challenger_share,
            record.actor,
            record.reason,
        )
        return True

    def failing(self) -> dict[str, str]:
        """Model -> why its newest decision is not serving yet (for ``/ready``)."""
        failures = self._models.failures()
        out: dict[str, str] = {}
        for model, record in self._pending.items():
            reasons = [
                f"version {v}: {failures[(model, v)].reason}"
                for v in record.versions()
                if (model, v) in failures
            ]
            out[model] = f"generation {record.generation} waits: " + "; ".join(
                reasons or ["loading"]
            )
        return out

    # -- the consumer --------------------------------------------------------------------

    async def on_start(self) -> None:
        """Start reading the topic in the background (a broker outage is retried there)."""
        self.add_future(self._read_forever())

    async def on_stop(self) -> None:
        """Stop the consumer."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def _read_forever(self) -> None:
        def report(exc: BaseException, failures: int, delay: float) -> None:
            log.warning("deployments reader: %r; reconnecting in %.1f s", exc, delay)

        await retry_outages(
            self._read_until_stopped,
            is_outage=lambda exc: isinstance(exc, KafkaError | OSError),
            backoff=Backoff(0.2, 5.0),
            on_retry=report,
            pause=self.sleep,
        )

    async def _read_until_stopped(self) -> None:
        if self.should_stop:
            return
        try:
            await self._read()
        except (KafkaError, OSError):
            consumer, self._consumer = self._consumer, None
            if consumer is not None:
                await consumer.stop()
            raise

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(self.kafka_url),
            enable_auto_commit=False,
            fetch_max_wait_ms=self._fetch_wait_ms,
            auto_offset_reset="earliest",
            **client_options(self._kafka_auth),
        )
        await consumer.start()
        self._consumer = consumer
        partitions: set[int] = set()
        while not partitions and not self.should_stop:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(self.topic) or set()
            if not partitions:
                self.caught_up.set()  # nothing to catch up with yet
                await self.sleep(0.5)
        consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
        while not self.should_stop:
            batches = await consumer.getmany(timeout_ms=500)
            records = [m for messages in batches.values() for m in messages]
            await self._apply_raw((m.key, m.value) for m in records)
            if not records:
                self.caught_up.set()
                await self._retry_pending()

    def registered(self, model: str) -> bool:
        """Whether ``model`` has a version in the registry (the default model always)."""
        return model == self._default.model or bool(self._registry.versions(model))

    async def _apply_raw(self, messages: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        newest: dict[str, DeploymentRecord] = {}
        now = self._clock()
        for key, value in messages:
            if value is None:
                continue  # a tombstone: only for compaction (see the module's docstring)
            try:
                record = read_record(
                    self.topic, key, value, self._auth, registered=self.registered, now_s=now
                )
            except ValidationError as exc:
                # The deployments agent dead-letters it; every reader only skips it.
                log.warning("skipping a deployment record: %s", exc)
                continue
            kept = newest.get(record.model)
            if kept is None or record.generation > kept.generation:
                newest[record.model] = record
        for record in newest.values():  # replaying a long history loads only the newest
            await self.apply(record)

    async def _retry_pending(self) -> None:
        for model in list(self._pending):
            await self._activate(model)
