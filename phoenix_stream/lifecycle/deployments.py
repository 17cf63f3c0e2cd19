"""Deployments: who serves each model, decided on the record and read by every worker.

A deployment decision is a ``DeploymentRecord`` on the compacted ``deployments`` topic,
keyed by model. Each carries a ``generation`` that only grows: the writer takes
``max(highest seen + 1, milliseconds since epoch)``, so writers need no coordination and
a replayed or reordered record can never roll a deployment back (readers keep the
highest). Every worker runs a ``DeploymentBoard``: a plain consumer that reads the topic
from the beginning (no consumer group, so each worker sees every record), loads the new
versions off the event loop and only then swaps the deployment in, atomically (one dict
assignment read by the predictor per batch). A version that fails to load leaves the
previous deployment serving; the board retries it and reports it in ``/ready``, the
``phoenix_deployment_pending`` metric and the log.

Why not a Faust GlobalTable: a table written by an agent still needs the same
highest-generation rule, and its changelog recovery is where faust-streaming's open
table bugs live (docs/architecture.md section 5); one consumer per worker on a compacted
topic is the same read with fewer moving parts. The audit trail (who, when, why, evidence) is
written to PostgreSQL by the ``deployments`` agent.

Every reader (the board and the agent) takes a record through ``read_record``: it must
carry a valid authenticator (``control_auth``), be keyed by its model, name a model in
the registry, and have a generation no publisher could exceed (at most
``MAX_GENERATION_LEAD_S`` ahead of the reader's clock: generations are milliseconds
since epoch, so a generation at the top of its range cannot lock a model). A tombstone
(no value; ``DELETE /v1/deployments/{model}``) changes nothing while a worker runs: it
lets compaction forget a model that is no longer in the registry.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from phoenix_stream import metrics
from phoenix_stream.exceptions import Unauthenticated, UnknownModelError, ValidationError
from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.messages.validation import decode_json
from phoenix_stream.retrying import Backoff, retry_outages
from phoenix_stream.serving.models import ServingModels
from phoenix_stream.serving.registry import ModelRegistry, is_identifier
from phoenix_stream.serving.router import Deployment
from phoenix_stream.settings import STRATEGIES, Strategy, bootstrap_servers
from phoenix_stream.streaming.kafka_auth import PLAINTEXT, KafkaAuth, client_options

log = logging.getLogger(__name__)

# Canary steps when a record names none (Flagger's stepWeights style), fractions.
DEFAULT_STEPS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.25, 0.50)
MAX_TEXT = 1000  # characters kept of actor and reason
MAX_EVIDENCE_BYTES = 16_384
_YEAR_10000 = 253_402_300_800.0  # seconds since epoch; PostgreSQL's timestamps end there
# How far ahead of a reader's clock a generation (ms since epoch) may be, seconds: clock
# skew between workers, and many decisions within one millisecond, stay far below it.
MAX_GENERATION_LEAD_S = 3600.0


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """One decision: the deployment, its generation, and who made it, when and why."""

    deployment: Deployment
    generation: int
    actor: str = "settings"
    reason: str = ""
    decided_at: float = 0.0  # seconds since epoch
    evidence: Mapping[str, Any] = field(default_factory=dict)
    steps: tuple[float, ...] = ()  # canary shares to ramp through, fractions
    step: int = -1  # index into steps of the current share, -1 when not ramping
    # Since when this challenger has been scored (seconds since epoch): its evidence counts
    # from there, across the steps of one rollout. 0.0 without a challenger.
    challenger_since: float = 0.0
    # Who deployed this challenger (the authenticated actor), carried along its rollout:
    # a retraining does not replace a challenger that a person chose. "" without one.
    challenger_by: str = ""

    @property
    def model(self) -> str:
        """The model this record deploys."""
        return self.deployment.model

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types, the wire and API shape."""
        d = self.deployment
        return {
            "model": d.model,
            "champion": d.champion,
            "challenger": d.challenger,
            "strategy": d.strategy,
            "share": d.challenger_share,
            "generation": self.generation,
            "actor": self.actor,
            "reason": self.reason,
            "decided_at": self.decided_at,
            "evidence": dict(self.evidence),
            "steps": list(self.steps),
            "step": self.step,
            "challenger_since": self.challenger_since,
            "challenger_by": self.challenger_by,
        }

    def encode(self) -> bytes:
        """Unsigned JSON bytes (readers refuse them on the topic: see ``seal``)."""
        return orjson.dumps(self.as_dict())

    def seal(self, auth: ControlAuth, topic: str) -> bytes:
        """Signed JSON bytes for the deployments topic ``topic``."""
        return auth.seal(topic, self.as_dict())

    def versions(self) -> list[str]:
        """The versions this deployment scores with (champion, then challenger)."""
        d = self.deployment
        return [d.champion] if d.challenger is None else [d.champion, d.challenger]


def decode_record(raw: bytes | None) -> DeploymentRecord:
    """A record from the topic's bytes; ValidationError naming the field when invalid."""
    return parse_record(decode_json(raw))


def parse_record(data: Any) -> DeploymentRecord:
    """Validate a decoded deployment record; ValidationError naming the field."""
    if not isinstance(data, dict):
        raise ValidationError("$", "a deployment must be a JSON object")
    model = _name(data, "model")
    champion = _name(data, "champion")
    challenger = data.get("challenger")
    if challenger is not None:
        challenger = _name(data, "challenger")
    strategy = data.get("strategy", "single" if challenger is None else "shadow")
    if strategy not in STRATEGIES:
        raise ValidationError("strategy", f"must be one of {', '.join(STRATEGIES)}")
    if challenger is None and strategy != "single":
        raise ValidationError("challenger", f"is required with strategy {strategy!r}")
    if challenger is not None and challenger == champion:
        raise ValidationError("challenger", "must differ from the champion")
    share = _fraction(data.get("share", 0.0), "share")
    generation = data.get("generation")
    if type(generation) is not int or not 0 < generation < 2**63:
        raise ValidationError("generation", "must be a positive 64-bit integer")
    steps_raw = data.get("steps", [])
    if not isinstance(steps_raw, list) or len(steps_raw) > 20:
        raise ValidationError("steps", "must be a list of at most 20 shares")
    steps = tuple(_fraction(s, f"steps[{i}]") for i, s in enumerate(steps_raw))
    if list(steps) != sorted(steps):
        raise ValidationError("steps", "must be increasing")
    step = data.get("step", -1)
    if type(step) is not int or not -1 <= step < max(len(steps), 1):
        raise ValidationError("step", "must index steps, or be -1")
    decided_at = _epoch_seconds(data.get("decided_at", 0.0), "decided_at")
    since = 0.0 if challenger is None else data.get("challenger_since", decided_at)
    since = _epoch_seconds(since, "challenger_since")
    evidence = data.get("evidence") or {}
    if not isinstance(evidence, dict):
        raise ValidationError("evidence", "must be an object")
    if len(encoded := orjson.dumps(evidence)) > MAX_EVIDENCE_BYTES or b"\\u0000" in encoded:
        raise ValidationError("evidence", f"must be at most {MAX_EVIDENCE_BYTES} bytes, no NUL")
    strategy_value: Strategy = strategy
    actor = _text(data, "actor")
    challenger_by = "" if challenger is None else _text(data, "challenger_by") or actor
    return DeploymentRecord(
        Deployment(model, champion, challenger, strategy_value, share),
        generation,
        actor=actor,
        reason=_text(data, "reason"),
        decided_at=decided_at,
        evidence=evidence,
        steps=steps,
        step=step,
        challenger_since=since,
        challenger_by=challenger_by,
    )


def read_record(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    auth: ControlAuth,
    *,
    registered: Callable[[str], bool],
    now_s: float,
) -> DeploymentRecord:
    """The decision a record of ``topic`` carries, if a reader may take it.

    Unauthenticated (dead-letter kind ``unauthenticated_control``) for a wrong or missing
    authenticator or a key that is not the record's model; ValidationError naming the
    field for an invalid record, a model not in the registry, or a generation ahead of
    what any publisher could have made by ``now_s`` (seconds since epoch).
    """
    record = parse_record(auth.open(topic, value))
    if key != record.model.encode():
        raise Unauthenticated("key", f"record key must be its model {record.model!r}")
    if not registered(record.model):
        raise ValidationError("model", f"no model {record.model!r} in the registry")
    limit = int((now_s + MAX_GENERATION_LEAD_S) * 1000)
    if record.generation > limit:
        raise ValidationError(
            "generation",
            f"{record.generation} is ahead of any publisher's (milliseconds since epoch, "
            f"at most {MAX_GENERATION_LEAD_S:.0f} s ahead of this reader's clock)",
        )
    return record


def _epoch_seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(where, "must be seconds since epoch")
    if not (math.isfinite(value) and 0 <= value < _YEAR_10000):
        raise ValidationError(where, "must be seconds since epoch before year 10000")
    return float(value)


def _name(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not is_identifier(value):
        raise ValidationError(key, "must be a model name or version (letters, digits, ._-)")
    return value


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(where, "must be a number between 0 and 1")
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValidationError(where, "must be between 0 and 1")
    return number


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ValidationError(key, "must be a string")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise ValidationError(key, "must be valid text") from exc
    if "\x00" in value:
        raise ValidationError(key, "must not contain NUL")
    return value[:MAX_TEXT]


def next_generation(highest: int, clock: Callable[[], float] = time.time) -> int:
    """A generation above ``highest``: milliseconds since epoch, or one more if that is not."""
    return max(highest + 1, int(clock() * 1000))


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
