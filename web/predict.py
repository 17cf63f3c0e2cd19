"""``POST /v1/predict`` and ``POST /v1/predict/batch``: synchronous scoring over HTTP.

Same core as the Kafka agent (validation, predictor, encoding); the predictions are also
produced to ``predictions`` and the answer is sent after the broker acknowledged them,
so an HTTP prediction reaches PostgreSQL like any other. Any body gets 200 or a JSON 4xx
naming the field; 503 when the worker cannot take or record the work.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web as aiohttp_web
from faust import web

from phoenix_stream import metrics
from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.requests import ParsedRequest, parse_request
from phoenix_stream.serving.predictor import Outcome, Rejection, Scored
from phoenix_stream.web.context import phoenix_app
from phoenix_stream.web.responses import json_error, json_errors, json_response, read_json

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

# Rejection kind -> HTTP status.
_STATUS = {
    "unknown_model": 404,
    "unknown_entity": 404,
    "unknown_feature": 422,
    "features_unavailable": 503,
    "model_error": 503,
}


def _new_id() -> str:
    return uuid.uuid4().hex


def answer(scored: Scored) -> dict[str, Any]:
    """The HTTP answer for one served prediction."""
    return {
        "request_id": scored.request_id,
        "entity_id": scored.entity_id,
        "model": scored.model,
        "version": scored.version,
        "variant": scored.variant,
        "score": scored.score,
        "label": scored.label,
        "latency_ms": scored.latency_ms,
        "degraded": scored.degraded,
        "defaults_used": scored.defaults_used,
    }


def rejection_error(rejection: Rejection) -> tuple[int, dict[str, Any]]:
    """Status and JSON error body for a request the predictor could not serve."""
    return _STATUS.get(rejection.kind, 422), {
        "error": rejection.error,
        "field": rejection.field,
        "kind": rejection.kind,
    }


async def score(app: PhoenixApp, requests: list[ParsedRequest]) -> Outcome:
    """Predict (coalesced with concurrent callers) and record on Kafka.

    Raises ``Overloaded``, ``DeliveryTimeout`` or ``ShuttingDown``: ``json_errors``
    answers those with 503.
    """
    metrics.REQUESTS.labels(source="http").inc(len(requests))
    return await app.runtime.http.submit(requests)


def _parse(default_model: str, item: Any, index: int | None = None) -> ParsedRequest:
    return parse_request(
        item,
        default_model=default_model,
        batch_index=index,
        require_request_id=False,
        id_factory=_new_id,
    )


class PredictView(web.View):
    """Score one request: ``{request_id?, entity_id, model?, features?}``."""

    @json_errors
    async def post(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        """200 with the prediction; 400 bad JSON, 404 unknown model, 413, 422 bad field."""
        app = phoenix_app(self)
        settings = app.settings
        body, error = await read_json(request, settings.max_record_bytes)
        if error is not None:
            return error
        try:
            parsed = _parse(settings.default_model, body)
        except ValidationError as exc:
            return json_error(422, exc.message, exc.field)
        outcome = await score(app, [parsed])
        if outcome.rejected:
            status, payload = rejection_error(outcome.rejected[0])
            return json_response(payload, status)
        return json_response(answer(outcome.served[0]))


class PredictBatchView(web.View):
    """Score a list of requests (``[...]`` or ``{"requests": [...]}``) in one batch."""

    @json_errors
    async def post(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        """200 with ``predictions`` and per-item ``errors`` (index, status, field)."""
        app = phoenix_app(self)
        settings = app.settings
        body, error = await read_json(request, settings.max_record_bytes)
        if error is not None:
            return error
        items = body.get("requests") if isinstance(body, dict) else body
        if not isinstance(items, list) or not items:
            return json_error(422, "must be a non-empty array of requests", "requests")
        if len(items) > settings.max_batch_requests:
            return json_error(
                413,
                f"batch holds {len(items)} requests, over the limit of "
                f"{settings.max_batch_requests}",
                "requests",
            )
        parsed: list[ParsedRequest] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                parsed.append(_parse(settings.default_model, item, index))
            except ValidationError as exc:
                errors.append(
                    {"index": index, "status": 422, "error": exc.message, "field": exc.field}
                )
        outcome = await score(app, parsed) if parsed else Outcome()  # nothing to queue
        for rejection in outcome.rejected:
            status, payload = rejection_error(rejection)
            errors.append({"index": rejection.request.batch_index, "status": status, **payload})
        errors.sort(key=lambda e: e["index"])
        position = {request.request_id: index for index, request in enumerate(parsed)}
        served = sorted(outcome.served, key=lambda s: position[s.request_id])
        return json_response({"predictions": [answer(s) for s in served], "errors": errors})


def register(app: PhoenixApp) -> None:
    """``POST /v1/predict`` and ``POST /v1/predict/batch``."""
    app.page("/v1/predict")(PredictView)
    app.page("/v1/predict/batch")(PredictBatchView)
