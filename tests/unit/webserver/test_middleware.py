"""The middleware's pieces: Content-Encoding checks, aiohttp's errors as JSON."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web as aiohttp_web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from phoenix_stream.webserver.middleware import encoding_refused, from_http_exception

WIRE = st.binary(max_size=30).map(lambda raw: raw.decode("utf-8", "surrogateescape"))
KNOWN = st.sampled_from(["gzip", "GZip", "deflate", "br", "zstd", "identity", ""])


def _body(response: aiohttp_web.Response) -> Any:
    assert response.content_type == "application/json"
    assert isinstance(response.body, bytes)
    return orjson.loads(response.body)


@given(value=KNOWN | WIRE | st.text(max_size=30))
def test_any_encoding_is_passed_or_a_json_415(value: str) -> None:
    refused = encoding_refused(CIMultiDict({"Content-Encoding": value}))
    folded = value.lower() if value.isascii() else value
    if folded in {"gzip", "deflate", "br", "zstd", "identity", ""}:
        assert refused is None
    else:
        assert refused is not None and refused.status == 415
        assert _body(refused)["field"] == "Content-Encoding"


def test_no_encoding_passes() -> None:
    assert encoding_refused(make_mocked_request("POST", "/v1/predict").headers) is None


def test_aiohttp_errors_become_json_keeping_their_headers() -> None:
    not_allowed = from_http_exception(aiohttp_web.HTTPMethodNotAllowed("DELETE", ["GET", "HEAD"]))
    assert not_allowed.status == 405 and not_allowed.headers["Allow"] == "GET,HEAD"
    assert _body(not_allowed)["field"] == "method"
    missing = from_http_exception(aiohttp_web.HTTPNotFound())
    assert (missing.status, _body(missing)) == (404, {"error": "Not Found", "field": "path"})
