"""The Faust web driver of the app: Faust's aiohttp driver with our server around it.

``PhoenixApp._new_web`` builds it. Faust 0.15.3's driver makes the aiohttp app from
``web_application_options`` (``application_options`` below gives it the middleware, the
body size limit and the connection's handler arguments) and its own ``AppRunner``,
which is replaced here by ``BoundedRunner`` before the server starts.
"""

from __future__ import annotations

from typing import Any

from faust.types import AppT
from faust.web.drivers.aiohttp import Web

from phoenix_stream.settings import Settings
from phoenix_stream.webserver.middleware import json_middleware
from phoenix_stream.webserver.protocol import BoundedRunner
from phoenix_stream.webserver.timing import timed


def application_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of the ``aiohttp.web.Application`` Faust builds."""
    return {
        "middlewares": [
            timed,  # outermost: it sees the JSON middleware's answers too
            json_middleware(settings.http_body_timeout_s, settings.max_record_bytes),
        ],
        # aiohttp refuses (413) a body over this once decoded: a gzip bomb stops here.
        "client_max_size": settings.max_record_bytes,
        "handler_args": {
            # aiohttp closes a connection that has not sent a complete request head this
            # long after it opened or after its previous answer (its keep-alive timer
            # watches the wait for the next head): the header read timeout.
            "keepalive_timeout": settings.http_header_timeout_s,
        },
    }


class PhoenixWeb(Web):
    """Faust's aiohttp driver with a bound on open connections and JSON parser errors."""

    def __init__(self, app: AppT, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        # Faust made its runner in __init__; nothing has started it yet.
        self._runner = BoundedRunner(self.web_app, access_log=None, max_connections=max_connections)
