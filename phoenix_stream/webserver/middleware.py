"""The middleware on Faust's aiohttp app: bodies read within a deadline, every error JSON.

Before any view runs, the request's ``Content-Encoding`` is checked (415 for one aiohttp
does not decode: the body would reach the view still encoded) and its body is read
within ``body_timeout_s`` (408 past it, the connection closed), so a slow body cannot
hold a connection longer and a body that is not what its encoding says is a 400 naming
``Content-Encoding``. aiohttp caches the body, so the view's own read is free. After the
view, aiohttp's own answers (404 no route, 405 method, 413) become
``{"error", "field"}`` JSON; anything a view raises unexpectedly a logged JSON 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web as aiohttp_web
from aiohttp.http_exceptions import ContentEncodingError

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.validation import shorten
from phoenix_stream.web.responses import json_error
from phoenix_stream.webserver.headers import header_text

log = logging.getLogger(__name__)

Handler = Callable[[aiohttp_web.Request], Awaitable[aiohttp_web.StreamResponse]]
Middleware = Callable[[aiohttp_web.Request, Handler], Awaitable[aiohttp_web.StreamResponse]]

# What aiohttp's parser decodes (aiohttp/http_parser.py, 3.14: the lower-cased value, if
# ASCII, one of gzip, deflate, br, zstd; br and zstd only with their libraries, else the
# parser refuses the request: webserver.protocol answers that 415). Anything else would
# reach the view as raw bytes.
DECODED = frozenset({"gzip", "deflate", "br", "zstd"})
IDENTITY = frozenset({"", "identity"})

# Which part of the request an aiohttp error answer is about.
_FIELDS = {404: "path", 405: "method", 413: "body", 414: "path", 415: "Content-Type"}
# Headers of aiohttp's answer that describe its text body, not ours.
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})


def json_middleware(body_timeout_s: float, max_body_bytes: int) -> Middleware:
    """The middleware, reading bodies within ``body_timeout_s`` seconds.

    ``max_body_bytes`` is the app's ``client_max_size`` (decoded bytes), for the 413.
    """

    @aiohttp_web.middleware
    async def json_answers(
        request: aiohttp_web.Request, handler: Handler
    ) -> aiohttp_web.StreamResponse:
        refused = encoding_refused(request.headers)
        if refused is None and request.body_exists:
            refused = await read_body(request, body_timeout_s, max_body_bytes)
        if refused is not None:
            return refused
        try:
            return await handler(request)
        except aiohttp_web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects are meant as they are
            return from_http_exception(exc)
        except Exception as exc:  # a bug of ours: logged, answered as JSON
            log.exception("%s %s failed", request.method, shorten(request.path, 200))
            return json_error(
                500, f"internal error ({type(exc).__name__}); it is logged", kind="internal"
            )

    return json_answers


def encoding_refused(headers: Mapping[str, str]) -> aiohttp_web.Response | None:
    """415 for a ``Content-Encoding`` (of ``headers``) aiohttp would not decode, else None."""
    try:
        value = header_text(headers, "Content-Encoding")
    except ValidationError as exc:
        return json_error(415, exc.message, exc.field)
    if value is None:
        return None
    folded = value.lower() if value.isascii() else value
    if folded in DECODED or folded in IDENTITY:
        return None
    supported = ", ".join(sorted(DECODED - {"br", "zstd"} | {"identity"}))
    return json_error(
        415,
        f"unsupported encoding {shorten(value, 40)!r}; supported: {supported}",
        "Content-Encoding",
    )


async def read_body(
    request: aiohttp_web.Request, timeout_s: float, max_bytes: int
) -> aiohttp_web.Response | None:
    """Read (and cache) the body; None, or the error answer (408, 413, 400)."""
    try:
        async with asyncio.timeout(timeout_s):
            await request.read()
    except TimeoutError:
        answer = json_error(408, f"the body did not arrive within {timeout_s:g} s", "body")
        answer.force_close()  # the rest of the body may never come
        return answer
    except aiohttp_web.HTTPRequestEntityTooLarge:
        answer = json_error(413, f"body is over the limit of {max_bytes} bytes", "body")
        answer.force_close()  # do not read the rest
        return answer
    except aiohttp_web.RequestPayloadError as exc:
        answer = payload_error(request, exc)
        answer.force_close()  # the stream is broken: the next request cannot be found
        return answer
    return None


def payload_error(request: aiohttp_web.Request, exc: BaseException) -> aiohttp_web.Response:
    """400 for a body aiohttp could not read: not what its encoding says, or cut short."""
    if isinstance(exc.__cause__, ContentEncodingError):
        encoding = shorten(request.headers.get("Content-Encoding", ""), 40)
        return json_error(400, f"the body is not valid {encoding} data", "Content-Encoding")
    return json_error(400, f"the body could not be read: {shorten(str(exc), 200)}", "body")


def from_http_exception(exc: aiohttp_web.HTTPException) -> aiohttp_web.Response:
    """aiohttp's own error answer as ``{"error", "field"}`` JSON, its headers kept."""
    headers = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
    error = (exc.text or exc.reason).removeprefix(f"{exc.status}: ")
    field = _FIELDS.get(exc.status)
    if exc.status == 405:
        error = f"{exc.reason}; allowed: {headers.get('Allow', '')}"
    return json_error(exc.status, shorten(error, 200), field, headers=headers)
