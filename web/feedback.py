"""``POST /v1/feedback``: true outcomes over HTTP, recorded on the ``feedback`` topic.

The body is one item ``{"request_id", "label": 0 | 1, "observed_at"?}``, a list of items,
or ``{"feedback": [...]}``. Valid items are produced (key: request_id, ``observed_at``
filled in with the time of receipt when missing) and the answer, 202 with
``{"accepted": n, "errors": [...]}``, is sent after the broker acknowledged them; the
feedback agent stores them like any other feedback. Any body gets 202 or a JSON 4xx
naming the field; 503 when the broker does not acknowledge in time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web as aiohttp_web
from faust import web

from phoenix_stream.app import app, settings
from phoenix_stream.exceptions import DeliveryTimeout, ProduceError, ShuttingDown, ValidationError
from phoenix_stream.lifecycle.feedback import ParsedFeedback, parse_feedback
from phoenix_stream.messages.requests import shorten
from phoenix_stream.streaming.records import OutRecord
from phoenix_stream.web.responses import json_error, json_errors, json_response, read_json

# How long a caller waits for its feedback to be recorded on Kafka, seconds.
EMIT_TIMEOUT_S = 5.0


def feedback_record(item: ParsedFeedback) -> OutRecord:
    """The ``feedback`` topic record of one item, keyed by request_id."""
    return OutRecord(settings.topic("feedback"), item.request_id.encode(), item.to_json())


async def record(items: list[ParsedFeedback]) -> None:
    """Produce ``items`` and wait for the broker; DeliveryTimeout or ShuttingDown (503)."""
    try:
        await asyncio.wait_for(
            app.runtime.emitter.emit([feedback_record(item) for item in items]), EMIT_TIMEOUT_S
        )
    except TimeoutError as exc:
        raise DeliveryTimeout("feedback could not be recorded on Kafka in time") from exc
    except ProduceError as exc:  # raised only while the worker stops
        raise ShuttingDown("the worker is stopping; the feedback was not recorded") from exc


@app.page("/v1/feedback")
class FeedbackView(web.View):
    """Take true labels of served requests."""

    @json_errors
    async def post(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        """202 ``{"accepted", "errors"}``; 400 bad JSON, 413 too large, 422 bad field."""
        body, error = await read_json(request, settings.max_record_bytes)
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
            await record([parsed])
            return json_response({"accepted": 1, "errors": []}, 202)
        return await self._many(items, now)

    async def _many(self, items: list[Any], now: float) -> aiohttp_web.Response:
        if not items:
            return json_error(422, "must be a non-empty array of feedback items", "feedback")
        if len(items) > settings.max_batch_requests:
            return json_error(
                413,
                f"holds {len(items)} items, over the limit of {settings.max_batch_requests}",
                "feedback",
            )
        accepted: list[ParsedFeedback] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                accepted.append(parse_feedback(item, now=now, batch_index=index))
            except ValidationError as exc:
                errors.append(
                    {"index": index, "status": 422, "error": exc.message, "field": exc.field}
                )
        if not accepted:
            first = errors[0]
            return json_error(422, first["error"], first["field"], errors=errors)
        await record(accepted)
        return json_response({"accepted": len(accepted), "errors": errors}, 202)
