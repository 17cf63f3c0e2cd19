"""``/v1/deployments``: who serves each model, the history, and (with the token) changes.

``GET /v1/deployments`` and ``GET /v1/deployments/{model}`` are open. ``PUT
/v1/deployments/{model}``, ``POST .../promote`` and ``POST .../rollback`` need
``Authorization: Bearer <PHOENIX_ADMIN_TOKEN>``: 401 without it, 403 with a wrong one,
and with no token configured they are off (403 saying so), never open. ``DELETE
/v1/deployments/{model}`` (admin) clears a model that is not in the registry (a ghost):
a tombstone on the compacted topic, so a restarted worker no longer reads it.

The audit trail's ``actor`` is the authenticated caller: ``admin`` (the token's holder),
followed by the name the body gives, if any (``admin:cli``), never that name alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web as aiohttp_web
from faust import web

from phoenix_stream import metrics
from phoenix_stream.credentials import ADMIN
from phoenix_stream.exceptions import DeliveryTimeout, SinkError, ValidationError
from phoenix_stream.lifecycle.deployment_record import DeploymentRecord
from phoenix_stream.messages.records import OutRecord
from phoenix_stream.messages.validation import is_identifier
from phoenix_stream.storage.deployments import DeploymentHistory
from phoenix_stream.web.auth import refuse_unless
from phoenix_stream.web.context import phoenix_app
from phoenix_stream.web.responses import json_error, json_errors, json_response, read_json

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

log = logging.getLogger(__name__)

# How long a caller waits for a tombstone to be recorded on Kafka, seconds.
EMIT_TIMEOUT_S = 5.0
_CHANGE_FIELDS = frozenset(
    {"champion", "challenger", "strategy", "share", "steps", "reason", "evidence", "actor"}
)


def refuse_unless_admin(
    app: PhoenixApp, request: aiohttp_web.Request
) -> aiohttp_web.Response | None:
    """None when the request carries the admin token, else the error response."""
    return refuse_unless(app.tokens, request, ADMIN)


def admin_actor(claimed: Any) -> str:
    """The actor of an admin request: ``admin``, or ``admin:<the name it gives>``."""
    name = str(claimed or "").strip()[:100]
    return f"{ADMIN}:{name}" if name else ADMIN


def state(app: PhoenixApp, model: str) -> dict[str, Any]:
    """What serves ``model`` on this worker, and a newer decision waiting to load."""
    board = app.runtime.deployments
    record = board.record(model)
    deployment = board.get(model)
    pending = board.pending().get(model)
    return {
        "model": model,
        "serving": record.as_dict() if record is not None else _unrecorded(deployment),
        "pending": pending.as_dict() if pending is not None else None,
        "pending_reason": board.failing().get(model),
    }


def _unrecorded(deployment: Any) -> dict[str, Any] | None:
    if deployment is None:
        return None
    return {
        "model": deployment.model,
        "champion": deployment.champion,
        "challenger": None,
        "strategy": "single",
        "share": 0.0,
        "generation": 0,
        "actor": "registry",
        "reason": "latest version, no recorded deployment",
    }


async def history(
    app: PhoenixApp, model: str | None
) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The audit trail from PostgreSQL, or why it is not available now."""
    try:
        return await DeploymentHistory(app.runtime.database).history(model), None
    except SinkError as exc:
        return None, str(exc)


def answer(app: PhoenixApp, record: DeploymentRecord) -> aiohttp_web.Response:
    """The decision and whether it serves on this worker already."""
    board = app.runtime.deployments
    serving = board.record(record.model)
    return json_response(
        {
            "deployment": record.as_dict(),
            "serving_here": serving is not None and serving.generation == record.generation,
            "pending_reason": board.failing().get(record.model),
        }
    )


class DeploymentsView(web.View):
    """Every model's deployment and the newest decisions."""

    @json_errors
    async def get(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        """200 with ``deployments`` and ``history`` (null with ``history_error`` if down)."""
        app = phoenix_app(self)
        models = app.runtime.deployments.names()
        events, error = await history(app, None)
        return json_response(
            {
                "deployments": [state(app, m) for m in models],
                "history": events,
                "history_error": error,
            }
        )


class DeploymentView(web.View):
    """One model's deployment; PUT changes it (admin)."""

    @json_errors
    async def get(self, request: aiohttp_web.Request, model: str) -> aiohttp_web.Response:
        """200, or 404 for a model that is not in the registry."""
        app = phoenix_app(self)
        if model not in app.runtime.deployments.names():
            return json_error(404, f"no model {model!r}", "model")
        events, error = await history(app, model)
        return json_response({**state(app, model), "history": events, "history_error": error})

    @json_errors
    async def put(self, request: aiohttp_web.Request, model: str) -> aiohttp_web.Response:
        """Deploy: ``{champion, challenger?, strategy?, share?, steps?, reason?}``."""
        app = phoenix_app(self)
        refused = refuse_unless_admin(app, request)
        if refused is not None:
            return refused
        body, error = await read_json(request, 65_536)
        if error is not None:
            return error
        if not isinstance(body, dict):
            return json_error(422, "must be a JSON object", "$")
        unknown = sorted(set(body) - _CHANGE_FIELDS)
        if unknown:
            return json_error(422, "unknown field", unknown[0][:64])
        actor = admin_actor(body.pop("actor", None))
        try:
            record = await app.runtime.publisher.deploy(model, body, actor=actor)
        except ValidationError as exc:
            status = 404 if exc.field == "model" else 422
            return json_error(status, exc.message, exc.field)
        return answer(app, record)

    @json_errors
    async def delete(self, request: aiohttp_web.Request, model: str) -> aiohttp_web.Response:
        """Clear a ghost: 200 once the tombstone is on the topic; 409 for a registered model."""
        app = phoenix_app(self)
        refused = refuse_unless_admin(app, request)
        if refused is not None:
            return refused
        if not is_identifier(model):
            return json_error(422, "must be a model name (letters, digits, ._-)", "model")
        if app.runtime.deployments.registered(model):
            return json_error(
                409, f"{model!r} is in the registry: deploy it instead of clearing it", "model"
            )
        topic = app.settings.topic("deployments")
        try:
            await asyncio.wait_for(
                app.runtime.emitter.emit([OutRecord(topic, model.encode(), None)]), EMIT_TIMEOUT_S
            )
        except TimeoutError as exc:
            raise DeliveryTimeout("the tombstone could not be recorded on Kafka in time") from exc
        log.warning("deployments of %s cleared by %s (a tombstone on %s)", model, ADMIN, topic)
        return json_response({"model": model, "cleared": True, "topic": topic})


async def _decide(
    app: PhoenixApp, request: aiohttp_web.Request, model: str, action: str
) -> aiohttp_web.Response:
    refused = refuse_unless_admin(app, request)
    if refused is not None:
        return refused
    body: Any = {}
    if request.body_exists:
        body, error = await read_json(request, 65_536)
        if error is not None:
            return error
    reason = body.get("reason", f"{action} by hand") if isinstance(body, dict) else ""
    actor = admin_actor(body.get("actor") if isinstance(body, dict) else None)
    publisher = app.runtime.publisher
    decide = publisher.promote if action == "promote" else publisher.rollback
    try:
        record = await decide(model, actor=actor, reason=str(reason)[:1000])
    except ValidationError as exc:
        status = 409 if exc.field == "challenger" else 404 if exc.field == "model" else 422
        return json_error(status, exc.message, exc.field)
    metrics.ROLLOUT_DECISIONS.labels(model=model, decision=action, by="operator").inc()
    return answer(app, record)


class PromoteView(web.View):
    """The challenger becomes the champion (admin)."""

    @json_errors
    async def post(self, request: aiohttp_web.Request, model: str) -> aiohttp_web.Response:
        """200 with the decision; 409 when there is no challenger."""
        return await _decide(phoenix_app(self), request, model, "promote")


class RollbackView(web.View):
    """The challenger is retired (admin)."""

    @json_errors
    async def post(self, request: aiohttp_web.Request, model: str) -> aiohttp_web.Response:
        """200 with the decision; 409 when there is no challenger."""
        return await _decide(phoenix_app(self), request, model, "rollback")


def register(app: PhoenixApp) -> None:
    """The ``/v1/deployments`` routes."""
    app.page("/v1/deployments")(DeploymentsView)
    app.page("/v1/deployments/{model}")(DeploymentView)
    app.page("/v1/deployments/{model}/promote")(PromoteView)
    app.page("/v1/deployments/{model}/rollback")(RollbackView)
