"""The outermost middleware: every HTTP answer's duration, by route template and status.

The route label is the matched route's template (``/v1/models/{name}``), never the path a
caller sent, and ``unmatched`` for a path no route takes, so callers cannot create series.
"""

from __future__ import annotations

import time

from aiohttp import web as aiohttp_web

from phoenix_stream import metrics
from phoenix_stream.webserver.middleware import Handler

UNMATCHED = "unmatched"
# Methods a route can be registered for; anything else is counted as "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@aiohttp_web.middleware
async def timed(request: aiohttp_web.Request, handler: Handler) -> aiohttp_web.StreamResponse:
    """Run ``handler`` and observe how long it took to answer."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except aiohttp_web.HTTPException as exc:  # redirects pass the JSON middleware raised
        status = exc.status
        raise
    finally:
        metrics.HTTP_DURATION.labels(
            route=route_template(request),
            method=request.method if request.method in _METHODS else "other",
            status=str(status),
        ).observe(time.perf_counter() - started)


def route_template(request: aiohttp_web.Request) -> str:
    """The template of the route that took ``request``, or ``unmatched``."""
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED
    return resource.canonical
