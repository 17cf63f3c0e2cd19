"""The view wrapper: availability errors are JSON 503, anything unexpected a JSON 500."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from aiohttp import web as aiohttp_web
from aiohttp.test_utils import make_mocked_request

from phoenix_stream.exceptions import DeliveryTimeout, Overloaded, ShuttingDown, ValidationError
from phoenix_stream.web.responses import json_errors


class RaisingView:
    """Stands in for a faust view whose handler raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    @json_errors
    async def post(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        raise self.error


async def answer(error: BaseException) -> tuple[aiohttp_web.Response, Any]:
    response = await RaisingView(error).post(make_mocked_request("POST", "/v1/predict"))
    assert response.content_type == "application/json"
    assert isinstance(response.body, bytes)
    return response, orjson.loads(response.body)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (Overloaded("7 requests are waiting to be scored (limit 5)"), "overloaded"),
        (ShuttingDown("the worker is stopping"), "shutting_down"),
        (DeliveryTimeout(""), "delivery_timeout"),
    ],
)
async def test_unavailable_is_json_503(error: Exception, kind: str) -> None:
    response, body = await answer(error)
    assert response.status == 503 and body["kind"] == kind and body["error"]
    assert response.headers.get("Retry-After") == ("1" if kind == "overloaded" else None)


async def test_unexpected_exception_is_a_logged_json_500(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="phoenix_stream.web.responses"):
        response, body = await answer(KeyError("boom"))
    assert response.status == 500 and body["kind"] == "internal" and "KeyError" in body["error"]
    [record] = caplog.records
    assert record.exc_info is not None and "/v1/predict" in record.getMessage()


async def test_validation_error_that_escaped_a_view_is_422() -> None:
    response, body = await answer(ValidationError("features.x", "must be a number"))
    assert response.status == 422 and body["field"] == "features.x"


async def test_aiohttp_answers_pass_through() -> None:
    with pytest.raises(aiohttp_web.HTTPMethodNotAllowed):
        await answer(aiohttp_web.HTTPMethodNotAllowed("PUT", ["POST"]))
