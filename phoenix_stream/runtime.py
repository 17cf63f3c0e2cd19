"""The worker's resources, opened once with the app and closed with it.

``Runtime`` is a ``mode.Service`` started before Faust's consumer and agents (see
``PhoenixApp.on_init_dependencies``), so an agent never sees a half-opened store. It
owns the feature store (Redis), the prediction sink (PostgreSQL), the model registry
and the objects built on them that the agents and views share.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import faust
from mode import Service

from phoenix_stream import metrics
from phoenix_stream.drift.monitor import DriftRule
from phoenix_stream.drift.references import DriftReferences
from phoenix_stream.exceptions import DeliveryTimeout
from phoenix_stream.features.store import FeatureStore
from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.lifecycle.deployments import DeploymentBoard
from phoenix_stream.lifecycle.label_sources import LabelSources
from phoenix_stream.lifecycle.publisher import DeploymentPublisher
from phoenix_stream.lifecycle.retrain_outcome import OUTCOMES
from phoenix_stream.lifecycle.retraining import RetrainJob, RetrainRules
from phoenix_stream.lifecycle.rollout import DECISIONS, RolloutController, RolloutRules
from phoenix_stream.messages.dead_letters import DeadLetters
from phoenix_stream.messages.requests import ParsedRequest
from phoenix_stream.serving.coalescer import Coalescer
from phoenix_stream.serving.models import ServingModels
from phoenix_stream.serving.predictor import Outcome, Predictor
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.serving.router import Deployment
from phoenix_stream.settings import Settings
from phoenix_stream.storage.database import is_transient as is_database_outage
from phoenix_stream.storage.evaluations import EvaluationStore
from phoenix_stream.storage.feedback import FeedbackStore
from phoenix_stream.storage.sink import PredictionSink
from phoenix_stream.storage.training_data import TrainingData
from phoenix_stream.streaming.emitter import BatchEmitter
from phoenix_stream.streaming.failure_policy import FailurePolicy
from phoenix_stream.streaming.kafka_auth import KafkaAuth
from phoenix_stream.streaming.lag_watch import LagWatch, assigned_partitions
from phoenix_stream.streaming.request_pipeline import (
    RequestPipeline,
    Topics,
    end_to_end_starts,
    observe_end_to_end,
    prediction_records,
    record_outcome_metrics,
)
from phoenix_stream.streaming.stalls import EXIT_STALLED, StallWatch
from phoenix_stream.streaming.topics import app_topic_specs
from phoenix_stream.streaming.transport import (
    broker_round_trip,
    consumer_flowing,
    consumer_progress,
    describe_consumer,
    describe_fetcher,
    describe_producer,
    kafka_producer,
)

log = logging.getLogger(__name__)

# How long a starting worker waits to have read the recorded deployments, seconds.
DEPLOYMENTS_CATCH_UP_S = 10.0

# How long an HTTP caller waits for its prediction to be recorded on Kafka, seconds.
HTTP_EMIT_TIMEOUT_S = 5.0

# Frames of Faust's delivery path, whose tasks a stall's log shows (where each waits).
_CONSUMER_FRAMES = ("transport/consumer.py", "transport/conductor.py", "transport/drivers/")

# How long each dependency may take to answer before a stalled worker exits, seconds.
STALL_PROBE_TIMEOUT_S = 2.0


def start_series(models: Iterable[str], output_topics: Iterable[str]) -> None:
    """Zero the counters of rare events before the first one happens.

    A series that appears only with its first increment hides that first event from
    ``increase()`` and ``rate()``, so alerts on rare events (a failed retraining, a
    rollback) would miss it. Only models in the registry get series, never a name a
    request sent.
    """
    for topic in output_topics:
        metrics.UNDELIVERABLE.labels(topic=topic)
    for model in models:
        metrics.DEPLOYMENTS_IGNORED.labels(model=model)
        metrics.DEFAULTED_PREDICTIONS.labels(model=model)
        metrics.DRIFT_LATE_COUNTS.labels(model=model)
        for outcome in OUTCOMES:
            metrics.RETRAIN_JOBS.labels(model=model, outcome=outcome)
        for decision in DECISIONS:
            metrics.ROLLOUT_DECISIONS.labels(model=model, decision=decision, by="controller")
        for decision in ("promote", "rollback"):
            metrics.ROLLOUT_DECISIONS.labels(model=model, decision=decision, by="operator")
        metrics.DRIFT_ALARMS.labels(model=model)


class Runtime(Service):
    """Feature store, sink, models, predictor and pipeline of one worker."""

    def __init__(self, settings: Settings, app: faust.App, **kwargs: Any) -> None:
        self.settings = settings
        self.app = app
        label_sources = LabelSources(trust_kafka=settings.trust_kafka_feedback)
        self._open_stores(settings, label_sources)
        self._serve(settings, app)
        self._decide(settings, label_sources)
        self._watch(settings, app)
        super().__init__(**kwargs)

    # -- the parts, built in this order (each uses the ones before) -----------------------

    def _open_stores(self, settings: Settings, label_sources: LabelSources) -> None:
        """Redis, PostgreSQL and the model registry; not connected until the start."""
        self.features = FeatureStore(settings.redis_url, timeout_s=settings.redis_timeout_s)
        self.sink = PredictionSink(settings.postgres_dsn)
        # The worker's one PostgreSQL pool, started with the sink; every store borrows it.
        self.database = self.sink.database
        # Labels and online evaluation.
        self.feedback = FeedbackStore(
            self.database,
            is_stopping=self._is_stopping,
            sources=label_sources,
            orphan_max=settings.feedback_orphan_max,
        )
        self.evaluations = EvaluationStore(self.database, label_sources)
        self.registry = ModelRegistry(settings.models_dir, intra_op_threads=settings.onnx_threads)
        self.models = ServingModels(
            self.registry,
            retry_s=settings.model_retry_s,
            registered=lambda model, version: version in self.registry.versions(model),
        )

    def _serve(self, settings: Settings, app: faust.App) -> None:
        """Who serves what, the predictor and the request pipeline that emits its answers."""
        # Signs and verifies the control records (deployments, retrain); the app refuses
        # to start without a key (PhoenixApp.on_first_start).
        self.control_auth = ControlAuth.from_settings(settings)
        self.deployments = DeploymentBoard(
            settings.kafka_url,
            settings.topic("deployments"),
            self.models,
            self.registry,
            Deployment.from_settings(settings),
            self.control_auth,
            kafka_auth=KafkaAuth.from_settings(settings),
        )
        self.predictor = Predictor(
            self.models,
            self.features,
            self.deployments.get,
            feature_max_age_s=settings.feature_max_age_s,
            unknown_entity_policy=settings.unknown_entity_policy,
            redis_down_policy=settings.redis_down_policy,
        )
        self.dead_letters = DeadLetters(
            settings.topic("dead-letters"), settings.dead_letter_max_bytes
        )
        self.emitter = BatchEmitter(
            lambda: kafka_producer(app),
            is_stopping=self._is_stopping,
            on_undeliverable=self.dead_letters.undeliverable,
        )
        self.topics = Topics(
            settings.topic("predictions"),
            settings.topic("shadow-predictions"),
            settings.topic("dead-letters"),
        )
        self.pipeline = RequestPipeline(
            self.predictor,
            self.emitter,
            self.topics,
            self.dead_letters,
            default_model=lambda: settings.default_model,
            max_record_bytes=settings.max_record_bytes,
            max_batch_requests=settings.max_batch_requests,
            chunk_requests=settings.chunk_requests,
        )
        self.http = Coalescer(
            self._score_http,
            max_batch=settings.max_batch_requests,
            max_waiting=settings.http_queue_max,
            deadline_s=settings.http_deadline_ms / 1000,
        )

    def _decide(self, settings: Settings, label_sources: LabelSources) -> None:
        """Deployment decisions: published, ramped or rolled back on evidence, retrained."""
        self.publisher = DeploymentPublisher(
            self.deployments,
            self.registry,
            self.emitter,
            settings.topic("deployments"),
            self.control_auth,
        )
        self.rollout = RolloutController(
            self.deployments,
            self.publisher,
            self.evaluations,
            RolloutRules(step_labels=settings.canary_step_labels),
        )
        # Retraining, called by the retrain agent: trains off the loop, deploys a shadow.
        self.retrain = RetrainJob(
            TrainingData(self.database, label_sources),
            self.deployments.get,
            self.publisher,
            settings.models_dir,
            RetrainRules.from_settings(settings),
            challenger_by=self._challenger_by,
        )
        # What drift is measured against: each served version's reference (drift agents).
        self.drift_references = DriftReferences(
            self.models,
            DriftRule(min_window=settings.drift_min_window, persistence=settings.drift_persistence),
        )

    def _watch(self, settings: Settings, app: faust.App) -> None:
        """Stalls, brokers and lag: what /ready and the metrics report of the worker."""
        # Every agent's stall watch (checked each second; /ready reads its stalls).
        self.stalls = StallWatch(settings.stall_timeout_s)
        # Broker ids seen in a metadata answer, so that /ready can name one that has gone.
        self.brokers_seen: set[int] = set()
        self._consumer_watched = False
        # The group's lag on this worker's partitions of the app's topics (/ready, metrics).
        self.lag = LagWatch(
            settings.kafka_bootstrap,
            str(app.conf.id),  # Faust's consumer group id
            [spec.name for spec in app_topic_specs(settings).values()],
            lambda: assigned_partitions(app),
            trust=settings.lag_trust,
            interval_s=settings.lag_interval_s,
            auth=KafkaAuth.from_settings(settings),
        )

    def failure_policy(self, agent: str, patience_s: float | None = None) -> FailurePolicy:
        """The failure policy for ``agent`` (every agent gets its policy here), with its
        stall watch: stalled after ``patience_s`` (default ``PHOENIX_STALL_TIMEOUT_S``)."""
        return FailurePolicy(
            agent,
            self.emitter,
            self.dead_letters,
            is_stopping=self._is_stopping,
            store_outage=is_database_outage,
            watch=self.stalls.agent(agent, patience_s),
        )

    @Service.timer(1.0)
    async def _watch_stalls(self) -> None:
        """Report stalls as they begin; exit when one lasts ``PHOENIX_STALL_EXIT_S``.

        The exit (status 70, ``EXIT_STALLED``) is for a supervisor to restart the worker:
        a stuck await does not come back by itself, and a graceful stop could hang on the
        same thing (a producer flush waits for every pending delivery). Nothing is lost:
        the records this worker held were never acknowledged, so the partitions' next
        owner reads them again (at-least-once; every consumer downstream is idempotent).
        No exit while a dependency fails: an outage explains the stall and a restart
        would not mend it (``/ready`` says which).
        """
        if not self._consumer_watched and self.app.consumer is not None:
            app = self.app
            self.stalls.consumer.observe(
                lambda: consumer_progress(app), lambda: consumer_flowing(app)
            )
            self._consumer_watched = True
        if self.stalls.check():
            log.error("producer: %s", describe_producer(self.app))
            log.error("consumer: %s", describe_consumer(self.app))
            log.error("fetcher: %s", describe_fetcher(self.app))
            for agent, chain in self.stalls.chains().items():
                log.error("agent %s waits at: %s", agent, " <- ".join(reversed(chain[-3:])))
            for name, chain in self.stalls.tasks_waiting_in(*_CONSUMER_FRAMES).items():
                log.error("task %s waits at:\n  %s", name, "\n  ".join(chain))
        exit_s = self.settings.stall_exit_s
        lasting = self.stalls.lasting(exit_s) if exit_s > 0 else []
        if not lasting or self.should_stop or self.app.should_stop:
            return
        failing = await self._failing_dependencies()
        if failing:
            log.warning(
                "agents %s stalled, but %s fail: not exiting",
                ", ".join(s.agent for s in lasting),
                ", ".join(failing),
            )
            return
        log.critical(
            "exiting with status %d for a restart: %s",
            EXIT_STALLED,
            "; ".join(f"agent {s.agent} {s.describe()}" for s in lasting),
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(EXIT_STALLED)

    async def _failing_dependencies(self) -> list[str]:
        """The dependencies that do not answer within ``STALL_PROBE_TIMEOUT_S``."""

        async def kafka() -> bool:
            await broker_round_trip(self.app)
            return True

        checks = {"redis": self.features.ping(), "postgres": self.database.ping(), "kafka": kafka()}

        async def answers(check: Any) -> bool:
            try:
                return bool(await asyncio.wait_for(check, STALL_PROBE_TIMEOUT_S))
            except Exception:  # a probe that fails in any way is a failing dependency
                return False

        results = await asyncio.gather(*(answers(c) for c in checks.values()))
        return [name for name, ok in zip(checks, results, strict=True) if not ok]

    def _challenger_by(self, model: str) -> str:
        """Who deployed ``model``'s challenger ("" when none or nobody recorded)."""
        record = self.deployments.record(model)
        return "" if record is None else record.challenger_by

    def _is_stopping(self) -> bool:
        # The app stops its agents before this runtime (a dependency): look at both.
        return bool(self.should_stop or self.app.should_stop)

    def on_init_dependencies(self) -> list[Service]:
        """Redis, PostgreSQL, the deployments reader and the lag watch start with the runtime.

        None of them blocks on an outage: each retries in the background.
        """
        return [self.features, self.sink, self.deployments, self.lag]

    async def _score_http(self, requests: list[ParsedRequest], received_at: float) -> Outcome:
        """Score a coalesced batch of HTTP requests and record it on Kafka."""
        outcome = await self.predictor.predict(requests, source="http", received_at=received_at)
        try:
            await asyncio.wait_for(
                self.emitter.emit(prediction_records(outcome, self.topics)), HTTP_EMIT_TIMEOUT_S
            )
        except TimeoutError as exc:
            raise DeliveryTimeout("prediction could not be recorded on Kafka in time") from exc
        answered_at = time.time()
        record_outcome_metrics(outcome, "http", answered_at - received_at)
        observe_end_to_end(end_to_end_starts(outcome), answered_at, "http")
        return outcome

    async def on_start(self) -> None:
        """Load the served model versions now (in threads), so the first request does not pay."""
        default = Deployment.from_settings(self.settings)
        # A version that fails is logged and remembered by prepare; /ready reports it and
        # the next batch after settings.model_retry_s tries it again.
        versions = filter(None, (default.champion, default.challenger))
        await self.models.prepare((default.model, version) for version in versions)

    async def on_started(self) -> None:
        """Wait (bounded) until the recorded deployments were read; dependencies run now.

        So the worker serves the recorded deployments from its first batch on, not the
        settings' one; bounded, so that a broker outage at start does not hold it back.
        """
        try:
            await asyncio.wait_for(self.deployments.caught_up.wait(), DEPLOYMENTS_CATCH_UP_S)
        except TimeoutError:
            log.warning("deployments not read within %.0f s; reading on", DEPLOYMENTS_CATCH_UP_S)
        metrics.record_build_info()
        start_series(self.deployments.names(), dataclasses.astuple(self.topics))

    async def on_stop(self) -> None:
        """Answer every HTTP caller before Redis and PostgreSQL close (grace of a few s)."""
        await self.http.close()
