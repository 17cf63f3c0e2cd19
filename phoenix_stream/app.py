"""The one ``faust.App`` of phoenix-stream; everything imports it from here.

Run a worker with ``phoenix-stream worker`` (the same as
``faust -A phoenix_stream.app worker``). Configuration comes only from ``Settings``
(``PHOENIX_*`` variables): the app is built with ``env={}`` so that Faust's own
variables such as ``BROKER_URL`` cannot override it behind our back.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

import faust
from faust.types import TopicT
from mode import ServiceT
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from phoenix_stream.messages.schemas import DeadLetter
from phoenix_stream.redaction import LogRedaction, settings_secrets
from phoenix_stream.runtime import Runtime
from phoenix_stream.settings import Settings
from phoenix_stream.stop_deadline import StopDeadline
from phoenix_stream.streaming.kafka_auth import KafkaAuth, faust_credentials
from phoenix_stream.streaming.topics import TopicDeclarations, TopicSpec, app_topic_specs
from phoenix_stream.streaming.transport import GenerationFlowControl, ShortFetchTransport
from phoenix_stream.webserver.driver import PhoenixWeb, application_options

# Modules that register agents, tables and web views. Listed, not autodiscovered:
# Faust's scan turns an import error into a logged warning and finds nothing.
AGENT_MODULES = {
    "inference": "phoenix_stream.agents.inference",
    "sink": "phoenix_stream.agents.sink",
    "deployments": "phoenix_stream.agents.deployments",
    "feedback": "phoenix_stream.agents.feedback",
    "drift": "phoenix_stream.agents.drift",
    "retrain": "phoenix_stream.agents.retrain",
}
COMPONENT_MODULES = (
    "phoenix_stream.web.predict",
    "phoenix_stream.web.health",
    "phoenix_stream.web.models",
    "phoenix_stream.web.deployments",
    "phoenix_stream.web.feedback",
    "phoenix_stream.web.evaluation",
    "phoenix_stream.web.drift",
    "phoenix_stream.web.retrain",
    "phoenix_stream.web.openapi",
)


class PhoenixApp(faust.App):
    """``faust.App`` with the short-fetch transport and our web driver; its topics and
    runtime start first, and a stop ends within ``PHOENIX_STOP_TIMEOUT_S``."""

    runtime: Runtime
    settings: Settings
    topic_declarations: TopicDeclarations
    stop_deadline: StopDeadline

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

    def _new_web(self) -> Any:
        # JSON for what aiohttp's parser refuses, and a bound on open connections.
        return PhoenixWeb(self, max_connections=self.settings.http_max_connections)

    async def on_stop(self) -> None:
        # First thing of a stop: from now on the process ends within stop_timeout_s.
        self.stop_deadline.arm()
        await super().on_stop()

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
    app.runtime = Runtime(settings, app)
    app.stop_deadline = StopDeadline(settings.stop_timeout_s)
    return app


settings = Settings.from_env()
app = create_app(settings)

TOPICS = app_topic_specs(settings)


def _topic(*specs: TopicSpec, **options: Any) -> TopicT:
    """The Faust topic of ``specs`` (one or more topics of one shape), as declared."""
    first = specs[0]
    return app.topic(
        *(spec.name for spec in specs),
        key_serializer="raw",
        partitions=first.partitions,
        replicas=first.replication,
        compacting=first.compacted,
        config=first.configs(),
        **options,
    )


requests_topic = _topic(TOPICS["requests"], value_serializer="raw")
predictions_topic = _topic(TOPICS["predictions"], value_serializer="raw")
shadow_predictions_topic = _topic(TOPICS["shadow-predictions"], value_serializer="raw")
# Both prediction topics, read raw by the sink, which dead-letters what it cannot decode
# (schema: messages.schemas.Prediction).
stored_predictions_topic = _topic(
    TOPICS["predictions"], TOPICS["shadow-predictions"], value_serializer="raw"
)
# Compacted, one partition, keyed by model: the latest decision per model is all a
# reader needs.
deployments_topic = _topic(TOPICS["deployments"], value_serializer="raw")
# Retrain requests (lifecycle.retraining.RetrainRequest), keyed by model, read raw by the
# retrain agent. One partition: one worker trains at a time, and a model's requests stay
# in order. Not compacted: a request not yet read must not be replaced by a later one.
retrain_topic = _topic(TOPICS["retrain"], value_serializer="raw")
# True outcomes, keyed by request_id; read raw by the feedback agent, which dead-letters
# what it cannot decode (schema: lifecycle.feedback).
feedback_topic = _topic(TOPICS["feedback"], value_serializer="raw")
# Histogram counts of prediction batches, keyed "model/version": the drift tables'
# source, co-partitioned with them (same key, same partition count).
drift_counts_topic = _topic(TOPICS["drift-counts"], value_serializer="raw")
# Closed windows' drift reports (drift.report.DriftReport), keyed by model.
drift_topic = _topic(TOPICS["drift"], value_serializer="raw")
dead_letters_topic = _topic(TOPICS["dead-letters"], value_type=DeadLetter)

for _module in (*(AGENT_MODULES[name] for name in settings.agents), *COMPONENT_MODULES):
    importlib.import_module(_module)
