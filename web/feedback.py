"""``POST /v1/feedback``: true outcomes of served predictions, with a feedback token.

The caller sends ``Authorization: Bearer <token>`` with a token of
``PHOENIX_FEEDBACK_TOKENS`` (401 without, 403 wrong, of the admin scope or, per item, for
a model the token may not label; with no feedback token configured the endpoint is off,
403). The body is one item ``{"request_id", "label": 0 | 1, "observed_at"?}``, a list of
items, or ``{"feedback": [...]}``. A label attaches only to a prediction that is stored
(404 naming ``request_id`` otherwise): orphans come only from the Kafka topic. Labels are
written straight to PostgreSQL with source ``http:<principal>`` (not through the topic,
whose writers cannot be told apart), and the answer, 202 ``{"accepted": n, "errors":
[...]}``, is sent once they are stored; the first label of a request wins, a repeat is
accepted and counted as a duplicate. 503 when PostgreSQL does not answer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web as aiohttp_web
from faust import web

from phoenix_stream import metrics
from phoenix_stream.credentials import FEEDBACK, Principal
from phoenix_stream.exceptions import SinkError, ValidationError
from phoenix_stream.lifecycle.feedback import ParsedFeedback, parse_feedback
from phoenix_stream.messages.validation import shorten
from phoenix_stream.storage.feedback import FeedbackReport
from phoenix_stream.web.auth import authenticate
from phoenix_stream.web.context import phoenix_app
from phoenix_stream.web.responses import json_error, json_errors, json_response, read_json

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

_MISSING = (
    404,
    "no stored prediction for this request_id; labels attach only to served predictions "
    "(one served a moment ago may not be stored yet: retry)",
)
_OUT_OF_SCOPE = (403, "this token may not label predictions of this request's model")


class FeedbackView(web.View):
    """Take true labels of served requests."""

    @json_errors
    async def post(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        """202 ``{"accepted", "errors"}``; 401/403 token, 400 bad JSON, 413 too large,
        422 bad field, 404 no such prediction, 503 PostgreSQL down."""
        try:
            return await self._post(request)
        except SinkError as exc:
            return json_error(
                503,
                f"PostgreSQL cannot store the labels now: {shorten(str(exc), 200)}; retry",
                kind="database",
            )

    async def _post(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        app = phoenix_app(self)
        principal = authenticate(app.tokens, request, FEEDBACK)
        if isinstance(principal, aiohttp_web.Response):
            return principal
        body, error = await read_json(request, app.settings.max_record_bytes)
        if error is not None:
            return error
        now = time.time()
        if isinstance(body, dict) and "feedback" in body:
            extra = sorted(str(key) for key in body if key != "feedback")
            if extra:
                return json_error(422, "unknown field", shorten(extra[0]))
            items = body["feedback"]
            if not isinstance(items, list):
                return json_error(422, "must be an array of feedback items", "feedback")
        elif isinstance(body, list):
            items = body
        else:
            try:
                parsed = parse_feedback(body, now=now)
            except ValidationError as exc:
                return json_error(422, exc.message, exc.field)
            refused = _refusals(await _attach(app, [parsed], principal))
            if parsed.request_id in refused:
                status, message = refused[parsed.request_id]
                return json_error(status, message, "request_id")
            return json_response({"accepted": 1, "errors": []}, 202)
        return await _many(app, items, now, principal)


async def _many(
    app: PhoenixApp, items: list[Any], now: float, principal: Principal
) -> aiohttp_web.Response:
    settings = app.settings
    if not items:
        return json_error(422, "must be a non-empty array of feedback items", "feedback")
    if len(items) > settings.max_batch_requests:
        return json_error(
            413,
            f"holds {len(items)} items, over the limit of {settings.max_batch_requests}",
            "feedback",
        )
    parsed: list[ParsedFeedback] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            parsed.append(parse_feedback(item, now=now, batch_index=index))
        except ValidationError as exc:
            errors.append({"index": index, "status": 422, "error": exc.message, "field": exc.field})
    if parsed:
        refused = _refusals(await _attach(app, parsed, principal))
        for item in parsed:
            if item.request_id in refused:
                status, message = refused[item.request_id]
                errors.append(
                    {"index": item.batch_index, "status": status, "error": message}
                    | {"field": "request_id"}
                )
        errors.sort(key=lambda e: int(e["index"]))
    accepted = len(items) - len(errors)
    if not accepted:
        first = errors[0]
        return json_error(first["status"], first["error"], first["field"], errors=errors)
    return json_response({"accepted": accepted, "errors": errors}, 202)


async def _attach(
    app: PhoenixApp, items: list[ParsedFeedback], principal: Principal
) -> FeedbackReport:
    """Store ``items`` for ``principal`` and count them; SinkError when PostgreSQL fails."""
    report = await app.runtime.feedback.attach(items, principal.name, principal.models)
    metrics.FEEDBACK_ROWS.inc(report.written)
    metrics.FEEDBACK_DUPLICATES.inc(report.duplicates)
    metrics.FEEDBACK_CONFLICTS.inc(report.conflicts)
    metrics.FEEDBACK_LABEL_DELAY.observe_many(report.label_delays)
    return report


def _refusals(report: FeedbackReport) -> dict[str, tuple[int, str]]:
    """request_id -> (status, message) of each item the store refused."""
    refused = {item.request_id: _MISSING for item in report.missing}
    refused.update((item.request_id, _OUT_OF_SCOPE) for item in report.out_of_scope)
    return refused


def register(app: PhoenixApp) -> None:
    """``POST /v1/feedback``."""
    app.page("/v1/feedback")(FeedbackView)
