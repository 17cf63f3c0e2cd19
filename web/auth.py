"""Bearer-token checks of the views, on one :class:`~phoenix_stream.credentials.TokenStore`.

Admin views call :func:`refuse_unless`\\ ``(tokens, request, ADMIN)``; the feedback view
:func:`authenticate`\\ ``(tokens, request, FEEDBACK)`` to learn who labels, with the
app's store (``PhoenixApp.tokens``). Errors are JSON naming
the ``Authorization`` header: 401 without a bearer token, 403 with a wrong one or one of
another scope, and 403 saying so when no token of the scope is configured.
"""

from __future__ import annotations

from aiohttp import web as aiohttp_web

from phoenix_stream.credentials import AuthFailure, Principal, TokenStore
from phoenix_stream.exceptions import ValidationError
from phoenix_stream.web.responses import json_error
from phoenix_stream.webserver.headers import header_text

__all__ = ["authenticate", "refuse_unless"]


def authenticate(
    tokens: TokenStore, request: aiohttp_web.Request, scope: str
) -> Principal | aiohttp_web.Response:
    """The caller's principal when its token holds ``scope``, else the error response."""
    try:
        header = header_text(request.headers, "Authorization")
    except ValidationError as exc:  # bytes that are no text: no token at all
        return json_error(401, f"bearer token {exc.message}", exc.field)
    found = tokens.authenticate(header, scope)
    if isinstance(found, AuthFailure):
        return json_error(found.status, found.error, found.field)
    return found


def refuse_unless(
    tokens: TokenStore, request: aiohttp_web.Request, scope: str
) -> aiohttp_web.Response | None:
    """None when the request's token holds ``scope``, else the error response."""
    found = authenticate(tokens, request, scope)
    return found if isinstance(found, aiohttp_web.Response) else None
