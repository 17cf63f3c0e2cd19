"""HTTP durations are labelled by route template and status, never by the caller's path."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from phoenix_stream import metrics
from phoenix_stream.webserver.middleware import json_middleware
from phoenix_stream.webserver.timing import timed


def count(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    value = metrics.REGISTRY.get_sample_value("phoenix_http_request_duration_seconds_count", labels)
    return value or 0.0


async def model(request: web.Request) -> web.Response:
    if request.match_info["name"] == "boom":
        raise RuntimeError("a bug")
    return web.json_response({"name": request.match_info["name"]})


async def test_routes_are_templates_and_unknown_paths_one_label() -> None:
    app = web.Application(middlewares=[timed, json_middleware(5.0, 1024)])
    app.router.add_get("/v1/models/{name}", model)
    ok, failed = count("/v1/models/{name}", "GET", "200"), count("/v1/models/{name}", "GET", "500")
    unmatched = count("unmatched", "GET", "404")
    other = count("unmatched", "other", "404")
    async with TestClient(TestServer(app)) as client:
        for name in ("a", "b", "c"):
            assert (await client.get(f"/v1/models/{name}")).status == 200
        assert (await client.get("/v1/models/boom")).status == 500  # answered by the middleware
        for path in ("/x1", "/x2", "/v1/models"):
            assert (await client.get(path)).status == 404
        assert (await client.request("TRACE", "/pot")).status == 404
    assert count("/v1/models/{name}", "GET", "200") - ok == 3
    assert count("/v1/models/{name}", "GET", "500") - failed == 1
    assert count("unmatched", "GET", "404") - unmatched == 3
    assert count("unmatched", "other", "404") - other == 1
    routes = {
        sample.labels["route"]
        for family in metrics.REGISTRY.collect()
        if family.name == "phoenix_http_request_duration_seconds"
        for sample in family.samples
    }
    assert not {"/x1", "/x2", "/pot", "/v1/models/a"} & routes
