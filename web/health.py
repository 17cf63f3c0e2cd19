"""``GET /health`` (alive), ``GET /ready`` (dependencies answer) and ``GET /metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from aiohttp import web as aiohttp_web
from faust import web

from phoenix_stream import metrics
from phoenix_stream.exceptions import ModelLoadError
from phoenix_stream.redaction import redact
from phoenix_stream.streaming.transport import cluster_health, group_membership
from phoenix_stream.web.context import phoenix_app
from phoenix_stream.web.responses import json_response

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

# A readiness probe must answer fast even when a dependency hangs, seconds.
PROBE_TIMEOUT_S = 1.0


class HealthView(web.View):
    """Liveness: the worker's event loop answers."""

    async def get(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        """Always 200 while the process runs."""
        return json_response({"status": "ok", "app": phoenix_app(self).settings.app_id})


async def _probe(name: str, check: Awaitable[bool]) -> str | None:
    """None when the dependency answered, else why not."""
    try:
        ok = await asyncio.wait_for(check, PROBE_TIMEOUT_S)
    except TimeoutError:
        ok, reason = False, f"{name} did not answer within {PROBE_TIMEOUT_S} s"
    except Exception as exc:  # a probe reports any failure, it never raises
        ok, reason = False, f"{name}: {exc!r}"
    else:
        reason = f"{name} did not answer"
    metrics.READY.labels(dependency=name).set(1 if ok else 0)
    return None if ok else reason


async def _kafka_answers(app: PhoenixApp, cluster: dict[str, object]) -> bool:
    """True once a broker answered a metadata request (raises otherwise).

    The same answer says which brokers are there and which partitions of the worker's
    topics lack a leader or in-sync replicas (kept for the ``kafka`` field of /ready).
    """
    topics = [app.settings.topic(name) for name in _OUR_TOPICS]
    health = await cluster_health(app, topics, app.runtime.brokers_seen)
    cluster.update(health.to_json())
    return True


_OUR_TOPICS = ("requests", "predictions", "shadow-predictions", "deployments", "feedback")


async def readiness(app: PhoenixApp, cluster: dict[str, object] | None = None) -> dict[str, str]:
    """Name -> reason for every dependency that is not ready (empty when all are).

    ``cluster`` receives what the broker said of itself (``ClusterHealth.to_json``).
    """
    runtime, settings = app.runtime, app.settings
    checks = {
        "redis": runtime.features.ping(),
        "postgres": runtime.database.ping(),
        "kafka": _kafka_answers(app, {} if cluster is None else cluster),
    }
    results = await asyncio.gather(*(_probe(n, c) for n, c in checks.items()))
    failing = {name: reason for name, reason in zip(checks, results, strict=True) if reason}
    # Not in its consumer group: the worker takes no records (its HTTP answers go to
    # Kafka, but nothing of its group would be read by it).
    membership = group_membership(app)
    metrics.READY.labels(dependency="kafka group").set(1 if membership.joined else 0)
    if not membership.joined:
        why = (
            f"the broker refused its join: {membership.refused}"
            if membership.refused
            else "joining"
        )
        failing["kafka group"] = f"not a member of consumer group {membership.group_id!r} ({why})"
    # Read only: loads happen off the loop (ServingModels.prepare), never in a probe. Only
    # versions that serve or wait to serve count: a failed version nobody deploys any more
    # is history (its failure stays in the metrics and the log).
    serving = runtime.deployments.get(settings.default_model)
    versions = [] if serving is None else [serving.champion, serving.challenger]
    for served in filter(None, versions):
        try:
            runtime.models.lookup(settings.default_model, served)
        except ModelLoadError as exc:  # failed (listed above) or not loaded yet
            failing[f"model {settings.default_model}/{served}"] = str(exc)
    # A newer deployment that cannot load yet: the previous one serves meanwhile.
    for model, reason in runtime.deployments.failing().items():
        failing[f"deployment {model}"] = reason
    # An agent that stopped consuming while records wait (the runtime checks each second).
    for agent, stall in runtime.stalls.current.items():
        failing[f"agent {agent}"] = f"stalled: {stall.describe()}"
    # A driver's error may echo the address it was given, credentials included.
    return {name: redact(reason) for name, reason in failing.items()}


class ReadyView(web.View):
    """Readiness: 200 when Redis, PostgreSQL, Kafka and the models answer, the worker is in
    its consumer group and no agent is stalled, else 503; with the group's lag."""

    async def get(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        """503 names each dependency that is not ready and why."""
        app = phoenix_app(self)
        cluster: dict[str, object] = {}
        failing = await readiness(app, cluster)
        # What the broker said: a missing broker or an under-replicated partition is
        # degraded service, not unreadiness (acks=all still holds with enough in sync).
        kafka = cluster or None
        # The group's lag is information: it never fails /ready (a failed sample says
        # why in lag_reason).
        lag = app.runtime.lag.to_json()
        if failing:
            return json_response({"ready": False, "failing": failing, "kafka": kafka, **lag}, 503)
        return json_response({"ready": True, "failing": {}, "kafka": kafka, **lag})


class MetricsView(web.View):
    """Prometheus text exposition of ``phoenix_stream.metrics``."""

    async def get(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        """The current metric values."""
        body, content_type = metrics.render()
        return aiohttp_web.Response(body=body, headers={"Content-Type": content_type})


def register(app: PhoenixApp) -> None:
    """``GET /health``, ``GET /ready`` and ``GET /metrics``."""
    app.page("/health")(HealthView)
    app.page("/ready")(ReadyView)
    app.page("/metrics")(MetricsView)
