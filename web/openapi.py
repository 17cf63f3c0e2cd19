"""``GET /openapi.json``: the OpenAPI description of this HTTP API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web as aiohttp_web
from faust import web

from phoenix_stream.webserver.openapi import document_bytes

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp


class OpenApiView(web.View):
    """The document (``phoenix_stream/webserver/openapi.json``)."""

    async def get(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        """200 with the OpenAPI 3.1 document."""
        return aiohttp_web.Response(body=document_bytes(), content_type="application/json")


def register(app: PhoenixApp) -> None:
    """``GET /openapi.json``."""
    app.page("/openapi.json")(OpenApiView)
