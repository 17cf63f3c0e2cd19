"""JSON responses shared by the views: every error names what went wrong and where."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web as aiohttp_web

from phoenix_stream.messages.requests import load_json

JSON = "application/json"


def json_response(body: Any, status: int = 200) -> aiohttp_web.Response:
    """A JSON response (orjson-encoded)."""
    return aiohttp_web.Response(body=orjson.dumps(body), status=status, content_type=JSON)


def json_error(
    status: int, error: str, field: str | None = None, **extra: Any
) -> aiohttp_web.Response:
    """``{"error": ..., "field": ...}`` with ``status``; ``field`` is a dotted path."""
    body: dict[str, Any] = {"error": error, "field": field, **extra}
    return json_response(body, status)


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
    except ValueError as exc:
        return None, json_error(400, f"invalid JSON: {exc}")
