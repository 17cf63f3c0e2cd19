"""The topics the app uses, created by the app itself before anything reads or writes one.

Faust 0.15.3 creates only its internal topics (table changelogs, the assignor's leader
topic, with ``topic_replication_factor``); a topic named with ``app.topic()`` is left to
the broker's auto-creation when a producer or consumer first names it, with the broker's
defaults: on the embedded broker ``phoenix.deployments`` came up with 4 partitions and
``cleanup.policy=delete`` (decisions expire; a worker restarted after that serves the
``PHOENIX_*`` defaults), and ``phoenix.retrain`` with 4 partitions (several trainings at
once). ``TopicDeclarations``, the app's first service, creates every topic of
``app_topic_specs`` with its partitions, replication, ``cleanup.policy`` and
``min.insync.replicas``, waits until the broker serves them, and reads them back:

- a topic that exists with other partitions or another cleanup policy than declared
  stops the start (``TopicMismatch``): partitions cannot shrink and a deleting
  ``deployments`` topic loses decisions, so an operator has to decide;
- another replication factor or ``min.insync.replicas`` is logged as a warning (a
  durability choice the operator may have made on purpose);
- a config the broker does not report (DescribeConfigs unsupported, or only explicitly
  set values reported) is logged as not checked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError
from mode import Service

from phoenix_stream.exceptions import TopicMismatch
from phoenix_stream.settings import Settings, bootstrap_servers
from phoenix_stream.streaming.kafka_auth import PLAINTEXT, KafkaAuth, check_login, client_options

__all__ = [
    "TopicDeclarations",
    "TopicSpec",
    "TopicState",
    "app_topic_specs",
    "declare_topics",
    "describe_topics",
]

log = logging.getLogger(__name__)

# A start gives up when the broker has not let the topics be created within this, s.
DECLARE_TIMEOUT_S = 60.0
# How long a created topic may take to show leaders for all its partitions, s.
METADATA_WAIT_S = 30.0
_TOPIC_ALREADY_EXISTS = 36  # Kafka error code
_FIXED_PARTITIONS = "fixed by the app"


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the app declares it; ``partitions_from`` says what sets its partitions."""

    name: str
    partitions: int
    replication: int
    min_insync: int
    compacted: bool = False
    partitions_from: str = "PHOENIX_TOPIC_PARTITIONS"

    @property
    def cleanup_policy(self) -> str:
        """``compact`` or ``delete``."""
        return "compact" if self.compacted else "delete"

    def configs(self) -> dict[str, str]:
        """Topic configs set at creation (explicit, so that every broker reports them)."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "min.insync.replicas": str(self.min_insync),
        }


@dataclass(frozen=True)
class TopicState:
    """A topic as the broker reports it; ``configs`` is None when it cannot tell."""

    name: str
    partitions: int
    replication: int  # the fewest replicas of any partition
    configs: Mapping[str, str] | None


def app_topic_specs(settings: Settings) -> dict[str, TopicSpec]:
    """Every topic the app uses, by short name (``requests``, ...), as it must be created."""

    def spec(short: str, partitions: int | None = None, *, compacted: bool = False) -> TopicSpec:
        return TopicSpec(
            settings.topic(short),
            settings.topic_partitions if partitions is None else partitions,
            settings.topic_replication,
            settings.topic_min_insync,
            compacted=compacted,
            partitions_from="PHOENIX_TOPIC_PARTITIONS" if partitions is None else _FIXED_PARTITIONS,
        )

    return {
        "requests": spec("requests"),
        "predictions": spec("predictions"),
        "shadow-predictions": spec("shadow-predictions"),
        "dead-letters": spec("dead-letters"),
        # One partition, compacted, keyed by model: the latest decision per model stays.
        "deployments": spec("deployments", 1, compacted=True),
        "feedback": spec("feedback"),
        "drift-counts": spec("drift-counts"),
        "drift": spec("drift"),
        # One partition: one worker trains at a time, a model's requests stay in order.
        "retrain": spec("retrain", 1),
    }


def _bootstrap(kafka_url: str) -> str:
    return bootstrap_servers(kafka_url)


async def describe_topics(
    admin: AIOKafkaAdminClient, names: Sequence[str]
) -> dict[str, TopicState]:
    """The broker's view of the ``names`` that exist with a leader on every partition."""
    found: dict[str, tuple[int, int]] = {}
    for topic in await admin.describe_topics(list(names)):
        partitions = topic["partitions"]
        if topic["error_code"] != 0 or not partitions:
            continue
        if any(p["error_code"] != 0 or p["leader"] < 0 for p in partitions):
            continue  # being created: not served yet
        found[topic["topic"]] = (len(partitions), min(len(p["replicas"]) for p in partitions))
    configs = await _describe_configs(admin, list(found))
    return {
        name: TopicState(name, partitions, replication, configs.get(name))
        for name, (partitions, replication) in found.items()
    }


async def _describe_configs(
    admin: AIOKafkaAdminClient, names: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Reported configs per topic; a topic the broker cannot describe is left out."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    try:
        responses = await admin.describe_configs(resources)
    except KafkaError as exc:
        log.warning("the broker does not describe topic configs (%r): not checked", exc)
        return {}
    out: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != 0:
                continue
            out[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"]
                for entry in resource["config_entries"]
                if entry["config_value"] is not None
            }
    return out


def _check(spec: TopicSpec, state: TopicState) -> tuple[list[str], list[str]]:
    """(errors, warnings) of ``state`` against ``spec``, each naming the topic."""
    errors: list[str] = []
    warnings: list[str] = []
    if state.partitions != spec.partitions:
        errors.append(
            f"{spec.name} has {state.partitions} partitions, the app declares "
            f"{spec.partitions} ({spec.partitions_from}): recreate the topic or change "
            "the setting"
        )
    if state.replication != spec.replication:
        warnings.append(
            f"{spec.name} has replication factor {state.replication}, "
            f"PHOENIX_TOPIC_REPLICATION says {spec.replication}"
        )
    reported = state.configs or {}
    policy = reported.get("cleanup.policy")
    if policy is None:
        warnings.append(f"{spec.name}: the broker does not report cleanup.policy; not checked")
    elif set(policy.split(",")) != {spec.cleanup_policy}:
        errors.append(
            f"{spec.name} has cleanup.policy={policy}, the app declares "
            f"{spec.cleanup_policy}: alter the topic's config"
        )
    min_insync = reported.get("min.insync.replicas")
    if min_insync is None:
        warnings.append(f"{spec.name}: the broker does not report min.insync.replicas; not checked")
    elif min_insync != str(spec.min_insync):
        warnings.append(
            f"{spec.name} has min.insync.replicas={min_insync}, "
            f"PHOENIX_TOPIC_MIN_INSYNC says {spec.min_insync}"
        )
    return errors, warnings


async def declare_topics(
    kafka_url: str,
    specs: Iterable[TopicSpec],
    *,
    metadata_wait_s: float = METADATA_WAIT_S,
    auth: KafkaAuth = PLAINTEXT,
) -> dict[str, TopicState]:
    """Create the missing topics of ``specs``, wait until served, check all; their states.

    TopicMismatch lists every topic whose partitions or cleanup policy differ; KafkaError
    when the broker refuses a creation (or cannot be reached).
    """
    wanted = {spec.name: spec for spec in specs}
    admin = AIOKafkaAdminClient(bootstrap_servers=_bootstrap(kafka_url), **client_options(auth))
    await admin.start()
    try:
        new = [
            NewTopic(s.name, s.partitions, s.replication, topic_configs=s.configs())
            for s in wanted.values()
        ]
        response = await admin.create_topics(new)
        created = []
        for name, code, *reason in response.topic_errors:
            if code == 0:
                created.append(name)
            elif code != _TOPIC_ALREADY_EXISTS:
                raise KafkaError(f"creating topic {name} failed: error {code} {reason}")
        if created:
            log.info("created topics %s", ", ".join(sorted(created)))
        states = await _wait_served(admin, list(wanted), metadata_wait_s)
    finally:
        await admin.close()
    errors: list[str] = []
    for name, spec in wanted.items():
        problems, warnings = _check(spec, states[name])
        errors.extend(problems)
        for warning in warnings:
            log.warning("topic %s", warning)
    if errors:
        raise TopicMismatch("; ".join(errors))
    return states


async def _wait_served(
    admin: AIOKafkaAdminClient, names: Sequence[str], wait_s: float
) -> dict[str, TopicState]:
    """States of ``names`` once every one has leaders (polled every 0.2 s, up to ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        states = await describe_topics(admin, names)
        missing = sorted(set(names) - set(states))
        if not missing:
            return states
        if time.monotonic() > deadline:
            raise KafkaError(f"topics not served {wait_s:.0f} s after creation: {missing}")
        await asyncio.sleep(0.2)


class TopicDeclarations(Service):
    """Creates and checks the app's topics at start, before any other service runs.

    A broker not reachable yet is retried with backoff for ``timeout_s`` seconds; then, or
    on a mismatch, the start fails with the reason.
    """

    def __init__(
        self,
        kafka_url: str,
        specs: Iterable[TopicSpec],
        *,
        timeout_s: float = DECLARE_TIMEOUT_S,
        auth: KafkaAuth = PLAINTEXT,
        **kwargs: Any,
    ) -> None:
        self.kafka_url = kafka_url
        self.auth = auth
        self.specs = list(specs)
        self.timeout_s = timeout_s
        self.states: dict[str, TopicState] = {}
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        """Declare the topics (bounded); raises TopicMismatch, KafkaAuthError or KafkaError."""
        deadline = time.monotonic() + self.timeout_s
        backoff = 0.2
        while True:
            try:
                # First of the worker's connections: a refused login fails the start here,
                # by name, instead of as "Unable to bootstrap" retried until the deadline.
                await check_login(_bootstrap(self.kafka_url), self.auth)
                self.states = await declare_topics(self.kafka_url, self.specs, auth=self.auth)
                return
            except KafkaConnectionError as exc:
                if time.monotonic() + backoff > deadline:
                    raise KafkaConnectionError(
                        f"could not create the app's topics within {self.timeout_s:.0f} s: {exc}"
                    ) from exc
                log.warning("creating topics: %r; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
