"""aiohttp's connection protocol with JSON answers, and a bound on open connections.

What aiohttp's parser refuses (a request line or header over 8190 bytes, more than 128
headers, a malformed request, an encoding it cannot decode) never reaches the app or
its middlewares: ``RequestHandler.handle_error`` answers it in text/plain. The
subclass here answers the same cases in ``{"error", "field"}`` JSON with a precise
status (414 request line too long, 431 headers too large, 415 encoding, 400 the rest).

Reaches into aiohttp 3.14's internals (checked against 3.14.5), all here:
``RequestHandler.handle_error`` (overridden), ``web.Server.__call__`` (the protocol
factory, overridden) and ``AppRunner._make_server`` with ``Server._kwargs``/``_loop``
(to build our server with the app's handler arguments).
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any, cast

import orjson
from aiohttp import web as aiohttp_web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    ContentEncodingError,
    ContentLengthError,
    InvalidHeader,
    LineTooLong,
    TransferEncodingError,
)
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_server import Server

from phoenix_stream.messages.validation import shorten

log = logging.getLogger(__name__)


# Headers the parser itself reads: its complaint about one names it.
_NAMED_HEADERS = ("Content-Length", "Transfer-Encoding", "Content-Encoding", "Host", "Upgrade")


def parser_error(exc: BaseException | None, line_too_long: bool) -> tuple[int, str, str | None]:
    """Status, message and field for what aiohttp's parser refused.

    ``line_too_long``: the request line had not ended within the line limit (a
    ``LineTooLong`` is then the request line's, 414; else a header's, 431).
    """
    text = getattr(exc, "message", None) or (str(exc) if exc is not None else "bad request")
    message = shorten(str(text), 200)
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else "the"
        if line_too_long:
            return 414, f"the request line is longer than {limit} bytes", "path"
        return 431, f"a header is longer than {limit} bytes", "headers"
    if isinstance(exc, ContentEncodingError):
        return 415, message, "Content-Encoding"
    if isinstance(exc, TransferEncodingError):
        return 400, message, "Transfer-Encoding"
    if isinstance(exc, ContentLengthError):
        return 400, message, "Content-Length"
    if isinstance(exc, BadHttpMethod):
        return 400, message, "method"
    if "chunk" in message.lower():  # the chunked framing of the body
        return 400, message, "body"
    named = [name for name in _NAMED_HEADERS if name.lower() in message.lower()]
    if named:
        return 400, message, named[0]
    if "too many headers" in message.lower():
        return 431, message, "headers"
    if isinstance(exc, InvalidHeader) or "header" in message.lower():
        return 400, message, "headers"
    return 400, message, None


class JsonRequestHandler(RequestHandler):
    """aiohttp's protocol, answering its own errors in JSON."""

    # Where the connection's first request line ended (None: not yet), found in its
    # first bytes: enough to tell a long request line (414) from a long header (431).
    _line_end: int | None = None
    _head: bytes = b""

    def data_received(self, data: bytes) -> None:
        if self._line_end is None and len(self._head) <= self.max_line_size:
            self._head += data[: self.max_line_size + 2]
            end = self._head.find(b"\n")
            self._line_end = None if end < 0 else end
        super().data_received(data)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        """The JSON form of aiohttp's error answer (it always closes the connection)."""
        if status == HTTPStatus.INTERNAL_SERVER_ERROR:
            # A handler raised past the middleware: aiohttp's text path logs it.
            super().handle_error(request, status, exc, message)
            error, field, kind = "internal error; it is logged", None, "internal"
        else:
            log.debug("refused a request from %s: %r", request.remote, exc)
            too_long = self._line_end is None or self._line_end > self.max_line_size
            status, error, field = parser_error(exc, too_long)
            kind = "bad_request"
        if request.writer.output_size > 0:  # as aiohttp: too late for another answer
            raise ConnectionError("the answer was sent already")
        body = orjson.dumps({"error": error, "field": field, "kind": kind})
        response = aiohttp_web.Response(status=status, body=body, content_type="application/json")
        response.force_close()
        return response


class BoundedServer(Server):
    """aiohttp's server with JSON errors, answering 503 beyond ``max_connections``."""

    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections

    def __call__(self) -> RequestHandler:
        """A new connection's protocol (refuses the connection when too many are open)."""
        if len(self.connections) >= self.max_connections:
            return _Refusing(self, loop=self._loop, **self._kwargs)
        return JsonRequestHandler(self, loop=self._loop, **self._kwargs)


_FULL = orjson.dumps(
    {"error": "too many open connections; retry later", "field": None, "kind": "overloaded"}
)
_FULL_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_FULL), _FULL)
)


class _Refusing(JsonRequestHandler):
    """A connection over the bound: one 503, then closed, reading nothing."""

    _closer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        transport = cast(asyncio.Transport, transport)
        # Not registered with the server: it never counts against the bound.
        self._manager = None
        transport.write(_FULL_ANSWER)
        # Closing now, with the client's request unread, would reset the connection
        # before the client reads the answer: end our side, drop what comes, close at
        # the client's end of stream or after a second.
        if transport.can_write_eof():
            transport.write_eof()
        self._closer = asyncio.get_running_loop().call_later(1.0, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # discarded: the answer is sent already

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._closer is not None:
            self._closer.cancel()


class BoundedRunner(aiohttp_web.AppRunner):
    """``AppRunner`` whose server is a ``BoundedServer``."""

    def __init__(self, app: aiohttp_web.Application, *, max_connections: int, **kwargs: Any):
        super().__init__(app, **kwargs)
        self._max_connections = max_connections

    async def _make_server(self) -> Server:
        made = await super()._make_server()
        return BoundedServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            max_connections=self._max_connections,
            **made._kwargs,
        )
