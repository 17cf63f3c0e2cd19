"""JSON responses shared by the views: every error names what went wrong and where.

``json_errors`` wraps a view method so that nothing it raises becomes aiohttp's
plain-text 500: the project's availability errors become 503, anything unexpected a
logged JSON 500 (a bug of ours; a client's bad input is always a 4xx).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web as aiohttp_web

from phoenix_stream.exceptions import (
    DeliveryTimeout,
    Overloaded,
    ShuttingDown,
    ValidationError,
)
from phoenix_stream.messages.text import UnstorableText
from phoenix_stream.messages.validation import load_json, shorten

JSON = "application/json"
RETRY_AFTER_S = 1  # seconds an overloaded worker asks a client to wait

log = logging.getLogger(__name__)

# A view method: (view, request, **path parameters) -> response.
Handler = Callable[..., Awaitable[aiohttp_web.Response]]


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> aiohttp_web.Response:
    """A JSON response (orjson-encoded)."""
    return aiohttp_web.Response(
        body=orjson.dumps(body), status=status, content_type=JSON, headers=headers
    )


def json_error(
    status: int,
    error: str,
    field: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> aiohttp_web.Response:
    """``{"error": ..., "field": ...}`` with ``status``; ``field`` is a dotted path."""
    body: dict[str, Any] = {"error": error, "field": field, **extra}
    return json_response(body, status, headers)


async def read_json(
    request: aiohttp_web.Request, max_bytes: int
) -> tuple[Any, aiohttp_web.Response | None]:
    """The decoded body, or an error response (413 over ``max_bytes``, 400 bad JSON)."""
    if request.content_length is not None and request.content_length > max_bytes:
        return None, json_error(
            413, f"body is {request.content_length} bytes, over the limit of {max_bytes}"
        )
    try:
        raw = await request.read()
    except aiohttp_web.HTTPRequestEntityTooLarge:
        return None, json_error(413, f"body is over the limit of {max_bytes} bytes")
    if len(raw) > max_bytes:
        return None, json_error(413, f"body is {len(raw)} bytes, over the limit of {max_bytes}")
    try:
        return load_json(raw), None
    except UnstorableText as exc:
        return None, json_error(400, exc.message, exc.field)
    except ValueError as exc:
        return None, json_error(400, f"invalid JSON: {exc}")


def json_errors(handler: Handler) -> Handler:
    """Wrap a view method: errors it raises become JSON (503 unavailable, 500 a bug)."""

    @functools.wraps(handler)
    async def guarded(
        view: object, request: aiohttp_web.Request, **path: str
    ) -> aiohttp_web.Response:
        try:
            return await handler(view, request, **path)
        except aiohttp_web.HTTPException:
            raise  # aiohttp's own answers (redirects, 405) are meant as they are
        except Overloaded as exc:
            return json_error(
                503,
                f"{_said(exc, 'the worker is overloaded')}; retry in {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
                kind="overloaded",
            )
        except ShuttingDown as exc:
            error = f"{_said(exc, 'the worker is stopping')}; retry on another worker"
            return json_error(503, error, kind="shutting_down")
        except DeliveryTimeout as exc:
            error = f"{_said(exc, 'the prediction was not recorded in time')}; retry"
            return json_error(503, error, kind="delivery_timeout")
        except ValidationError as exc:  # views catch these; a safety net, not the path
            return json_error(422, exc.message, exc.field)
        except Exception as exc:
            log.exception("%s %s failed", request.method, shorten(request.path, 200))
            return json_error(
                500, f"internal error ({type(exc).__name__}); it is logged", kind="internal"
            )

    return guarded


def _said(exc: Exception, default: str) -> str:
    return shorten(str(exc), 200) or default
