"""``POST /v1/models/{model}/retrain``: ask for a retraining, through the ``retrain`` topic.

Admin only (``Authorization: Bearer <PHOENIX_ADMIN_TOKEN>``, as the deployment changes).
The body (optional) is ``{"reason"?, "trigger_id"?, "report"?, "actor"?, "data_since"?,
"replace_challenger"?}`` (``replace_challenger``: the new version may replace a
challenger that a person deployed; only this admin path can say so). The request's
actor is ``admin`` (with the body's name: ``admin:cli``). The view produces a signed
``RetrainRequest`` keyed by the model and answers 202 once the broker has it,
so every retraining, by hand or on drift, runs through the one retrain agent. 404 for a
model not in the registry, 422 naming the field, 503 when the broker does not answer.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web as aiohttp_web
from faust import web

from phoenix_stream.exceptions import DeliveryTimeout, ProduceError, ShuttingDown, ValidationError
from phoenix_stream.lifecycle.retrain_request import RetrainRequest, parse_request
from phoenix_stream.messages.records import OutRecord
from phoenix_stream.messages.validation import shorten
from phoenix_stream.web.context import phoenix_app
from phoenix_stream.web.deployments import admin_actor, refuse_unless_admin
from phoenix_stream.web.responses import json_error, json_errors, json_response, read_json

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

# How long a caller waits for its request to be recorded on Kafka, seconds.
EMIT_TIMEOUT_S = 5.0
MAX_BODY_BYTES = 16_384
DEFAULT_REASON = "retrain requested by hand"
_BODY_FIELDS = frozenset(
    {"reason", "trigger_id", "report", "actor", "data_since", "replace_challenger"}
)


def retrain_record(app: PhoenixApp, request: RetrainRequest) -> OutRecord:
    """The signed ``retrain`` topic record of ``request``, keyed by its model."""
    topic = app.settings.topic("retrain")
    return OutRecord(topic, request.model.encode(), request.seal(app.runtime.control_auth, topic))


async def submit(app: PhoenixApp, request: RetrainRequest) -> None:
    """Produce ``request`` and wait for the broker; DeliveryTimeout or ShuttingDown (503)."""
    try:
        await asyncio.wait_for(
            app.runtime.emitter.emit([retrain_record(app, request)]), EMIT_TIMEOUT_S
        )
    except TimeoutError as exc:
        raise DeliveryTimeout("the retrain request could not be recorded on Kafka in time") from exc
    except ProduceError as exc:  # raised only while the worker stops
        raise ShuttingDown("the worker is stopping; the retrain request was not recorded") from exc


def request_from_body(model: str, body: Any, now: float) -> RetrainRequest:
    """The request a body asks for (defaults filled in); ValidationError naming the field."""
    if not isinstance(body, dict):
        raise ValidationError("$", "must be a JSON object")
    unknown = sorted(str(key) for key in body.keys() - _BODY_FIELDS)
    if unknown:
        raise ValidationError(shorten(unknown[0]), "unknown field")
    return parse_request(
        {
            "reason": DEFAULT_REASON,
            **body,
            "actor": admin_actor(body.get("actor")),
            "model": model,
            "requested_at": now,
        }
    )


class RetrainView(web.View):
    """Ask for a new version of a model trained on its recent labelled predictions (admin)."""

    @json_errors
    async def post(self, request: aiohttp_web.Request, model: str) -> aiohttp_web.Response:
        """202 ``{"request": {...}, "topic"}``; 401/403 token, 404 model, 422 field."""
        app = phoenix_app(self)
        settings = app.settings
        refused = refuse_unless_admin(app, request)
        if refused is not None:
            return refused
        if model not in app.runtime.registry.names():
            return json_error(404, f"no model {shorten(model)!r} in the registry", "model")
        body: Any = {}
        if request.body_exists:
            body, error = await read_json(request, MAX_BODY_BYTES)
            if error is not None:
                return error
        try:
            retrain = request_from_body(model, body, time.time())
        except ValidationError as exc:
            return json_error(422, exc.message, exc.field)
        await submit(app, retrain)
        answer: dict[str, Any] = {"request": retrain.as_dict(), "topic": settings.topic("retrain")}
        if "retrain" not in settings.agents:
            answer["warning"] = (
                "this worker does not run the retrain agent (PHOENIX_AGENTS): the request "
                "waits on the topic until a worker that runs it reads it"
            )
        return json_response(answer, 202)


def register(app: PhoenixApp) -> None:
    """``POST /v1/models/{model}/retrain``."""
    app.page("/v1/models/{model}/retrain")(RetrainView)
