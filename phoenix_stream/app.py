"""The ``faust.App`` of phoenix-stream, built by ``create_app(settings)``.

Run a worker with ``phoenix-stream worker`` (the same as
``faust -A phoenix_stream.app worker``). Configuration comes only from ``Settings``
(``PHOENIX_*`` variables): the app is built with ``env={}`` so that Faust's own
variables such as ``BROKER_URL`` cannot override it behind our back.

Importing this module builds nothing: ``create_app`` declares the topics, builds the
runtime and registers the agents and routes explicitly (each module's ``register``).
``phoenix_stream.app.app`` (what ``faust -A`` looks up) is the app of
``Settings.from_env()``, built on first access and the same object after that.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TopicT
from mode import ServiceT
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from phoenix_stream.agents import deployments as deployments_agent
from phoenix_stream.agents import drift as drift_agents
from phoenix_stream.agents import feedback as feedback_agent
from phoenix_stream.agents import inference as inference_agent
from phoenix_stream.agents import retrain as retrain_agent
from phoenix_stream.agents import sink as sink_agent
from phoenix_stream.credentials import TokenStore
from phoenix_stream.messages.schemas import DeadLetter
from phoenix_stream.redaction import LogRedaction, settings_secrets
from phoenix_stream.runtime import Runtime
from phoenix_stream.settings import Settings
from phoenix_stream.stop_deadline import StopDeadline, waiting_tasks
from phoenix_stream.streaming.kafka_auth import KafkaAuth, faust_credentials
from phoenix_stream.streaming.lingering_actors import cancel_lingering_actors
from phoenix_stream.streaming.topics import TopicDeclarations, TopicSpec, app_topic_specs
from phoenix_stream.streaming.transport import GenerationFlowControl, ShortFetchTransport
from phoenix_stream.web import deployments as deployments_routes
from phoenix_stream.web import drift as drift_routes
from phoenix_stream.web import evaluation as evaluation_routes
from phoenix_stream.web import feedback as feedback_routes
from phoenix_stream.web import health as health_routes
from phoenix_stream.web import models as models_routes
from phoenix_stream.web import openapi as openapi_routes
from phoenix_stream.web import predict as predict_routes
from phoenix_stream.web import retrain as retrain_routes
from phoenix_stream.webserver.driver import PhoenixWeb, application_options

Registration = Callable[["PhoenixApp"], None]

# What each name of PHOENIX_AGENTS registers (agents, and the tables they own).
AGENT_REGISTRATIONS: dict[str, Registration] = {
    "inference": inference_agent.register,
    "sink": sink_agent.register,
    "deployments": deployments_agent.register,
    "feedback": feedback_agent.register,
    "drift": drift_agents.register,
    "retrain": retrain_agent.register,
}
# The HTTP routes, on every worker (the OpenAPI document last: it lists the others).
ROUTE_REGISTRATIONS: tuple[Registration, ...] = (
    predict_routes.register,
    health_routes.register,
    models_routes.register,
    deployments_routes.register,
    feedback_routes.register,
    evaluation_routes.register,
    drift_routes.register,
    retrain_routes.register,
    openapi_routes.register,
)


@dataclass(frozen=True)
class AppTopics:
    """The app's Faust topics, as ``TopicDeclarations`` creates them (keys raw)."""

    requests: TopicT
    predictions: TopicT
    shadow_predictions: TopicT
    # Both prediction topics, read raw by the sink, which dead-letters what it cannot
    # decode (schema: messages.schemas.Prediction).
    stored_predictions: TopicT
    # Compacted, one partition, keyed by model: the latest decision per model is all a
    # reader needs.
    deployments: TopicT
    # Retrain requests (lifecycle.retrain_request.RetrainRequest), keyed by model. One
    # partition: one worker trains at a time, and a model's requests stay in order. Not
    # compacted: a request not yet read must not be replaced by a later one.
    retrain: TopicT
    # True outcomes, keyed by request_id (schema: lifecycle.feedback).
    feedback: TopicT
    # Histogram counts of prediction batches, keyed "model/version": the drift tables'
    # source, co-partitioned with them (same key, same partition count).
    drift_counts: TopicT
    # Closed windows' drift reports (drift.report.DriftReport), keyed by model.
    drift: TopicT
    dead_letters: TopicT


class PhoenixApp(faust.App):
    """``faust.App`` with the short-fetch transport and our web driver; its topics and
    runtime start first, and a stop ends within ``PHOENIX_STOP_TIMEOUT_S``."""

    runtime: Runtime
    settings: Settings
    phoenix_topics: AppTopics
    topic_declarations: TopicDeclarations
    stop_deadline: StopDeadline
    _actor_escort: asyncio.Future[None] | None = None

    def _new_transport(self) -> Any:
        transport = ShortFetchTransport(self.conf.broker_consumer, self)
        transport.fetch_max_wait_ms = self.settings.fetch_max_wait_ms
        return transport

    async def on_first_start(self) -> None:
        # Last line of defence behind explicit redaction: no log record of this process
        # shows a credential of the settings, whichever library wrote it.
        LogRedaction(settings_secrets(self.settings)).install()
        # Before any topic or connection: a worker without PHOENIX_CONTROL_KEY could
        # neither verify nor sign a control record, so it does not start (ConfigError).
        self.runtime.control_auth.require()
        await super().on_first_start()

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        # A resume keeps the events of the current generation (transport patch (9)).
        return GenerationFlowControl(lambda: self.consumer_generation_id, loop=self.loop)

    @cached_property
    def tokens(self) -> TokenStore:
        """The bearer tokens of the HTTP views, built on first use (a view's check)."""
        return TokenStore.from_settings(self.settings.admin_token, self.settings.feedback_tokens)

    def _new_web(self) -> Any:
        # JSON for what aiohttp's parser refuses, and a bound on open connections.
        return PhoenixWeb(self, max_connections=self.settings.http_max_connections)

    async def on_stop(self) -> None:
        # First thing of a stop: from now on the process ends within stop_timeout_s.
        self.stop_deadline.arm()
        # An agent task that lost Faust's one cancel would hold the stop until then.
        self._actor_escort = asyncio.ensure_future(
            cancel_lingering_actors(lambda: self.agents.values())
        )
        await super().on_stop()

    async def on_shutdown(self) -> None:
        if self._actor_escort is not None:
            self._actor_escort.cancel()
        await super().on_shutdown()

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        # Children start in this order. The topics first: any producer or consumer that
        # names a topic before it exists makes the broker create it with its defaults.
        # The runtime (Redis client, models) must be up before agents take events.
        return [self.topic_declarations, self.runtime, *super().on_init_dependencies()]


def create_app(settings: Settings) -> PhoenixApp:
    """Build the Faust app for ``settings`` (no connection is opened here)."""
    app = PhoenixApp(
        settings.app_id,
        env={},
        broker=settings.faust_broker,
        broker_credentials=faust_credentials(KafkaAuth.from_settings(settings)),
        autodiscover=False,
        store="memory://",
        datadir=str(settings.state_dir / "faust"),
        processing_guarantee="at_least_once",
        # Faust's own topics (table changelogs, the assignor's leader topic); ours are
        # created by TopicDeclarations (streaming/topics.py).
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        # Tansu profile (docs/architecture.md section 6): a short session so a worker joins in
        # seconds, earliest offsets, no standbys, no waiting for empty streams.
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        # The retrain agent holds a drift alarm's request while it waits for labels: not
        # a stuck stream (Faust logs one after 300 s without progress).
        stream_processing_timeout=max(300.0, settings.retrain_wait_s + 60.0),
        broker_commit_livelock_soft_timeout=max(300.0, settings.retrain_wait_s + 60.0),
        table_standby_replicas=0,
        # acks=all: a record is acknowledged (and its input committed, its HTTP caller
        # answered) once every in-sync replica has it (PHOENIX_TOPIC_MIN_INSYNC of them).
        producer_acks=-1,
        producer_linger=settings.producer_linger_ms / 1000.0,
        producer_max_batch_size=1_048_576,
        producer_max_request_size=4 * 1_048_576,
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_in_thread=False,
        # Every error JSON, bodies and heads read within deadlines (webserver/).
        web_application_options=application_options(settings),
    )
    app.settings = settings
    app.topic_declarations = TopicDeclarations(
        settings.kafka_url,
        app_topic_specs(settings).values(),
        auth=KafkaAuth.from_settings(settings),
    )
    app.phoenix_topics = _faust_topics(app, settings)
    app.runtime = Runtime(settings, app)
    app.stop_deadline = StopDeadline(
        settings.stop_timeout_s, describe=lambda: waiting_tasks(app.loop)
    )
    for name in settings.agents:
        AGENT_REGISTRATIONS[name](app)
    for register in ROUTE_REGISTRATIONS:
        register(app)
    return app


def _faust_topics(app: PhoenixApp, settings: Settings) -> AppTopics:
    specs = app_topic_specs(settings)

    def topic(*names: str, **options: Any) -> TopicT:
        """The Faust topic of the named specs (one or more topics of one shape)."""
        first: TopicSpec = specs[names[0]]
        return app.topic(
            *(specs[name].name for name in names),
            key_serializer="raw",
            partitions=first.partitions,
            replicas=first.replication,
            compacting=first.compacted,
            config=first.configs(),
            **options,
        )

    return AppTopics(
        requests=topic("requests", value_serializer="raw"),
        predictions=topic("predictions", value_serializer="raw"),
        shadow_predictions=topic("shadow-predictions", value_serializer="raw"),
        stored_predictions=topic("predictions", "shadow-predictions", value_serializer="raw"),
        deployments=topic("deployments", value_serializer="raw"),
        retrain=topic("retrain", value_serializer="raw"),
        feedback=topic("feedback", value_serializer="raw"),
        drift_counts=topic("drift-counts", value_serializer="raw"),
        drift=topic("drift", value_serializer="raw"),
        dead_letters=topic("dead-letters", value_type=DeadLetter),
    )


@functools.cache
def _app_from_env() -> PhoenixApp:
    return create_app(Settings.from_env())


def __getattr__(name: str) -> Any:
    # ``app`` for ``faust -A phoenix_stream.app`` and the worker command; ``settings`` is
    # that app's. Built on first access, so that importing this module has no side effect.
    if name == "app":
        return _app_from_env()
    if name == "settings":
        return _app_from_env().settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
