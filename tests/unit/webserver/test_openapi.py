"""The OpenAPI document says what the app serves: the same paths and methods as the
routes Faust's web app registers, and a document schemathesis accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis

from phoenix_stream.app import create_app
from phoenix_stream.settings import Settings
from phoenix_stream.webserver.openapi import FAUST_PATHS, document, operations


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    """(METHOD, path) of every route on the aiohttp app, as a starting worker builds it."""
    state_dir: Path = tmp_path_factory.mktemp("openapi")
    web: Any = create_app(Settings(state_dir=state_dir)).web
    if not list(web.web_app.router.routes()):
        web.init_server()  # what the worker's web service does at start
    routes = {
        (route.method, route.resource.canonical)
        for route in web.web_app.router.routes()
        if route.resource is not None
    }
    # HEAD: Faust adds one to every view (a GET's answer without its body, or 405).
    return {(method, path) for method, path in routes if method != "HEAD"}


def test_document_describes_every_route_and_no_other(registered: set[tuple[str, str]]) -> None:
    ours = {
        (method, path)
        for method, path in registered
        if not any(path == p or (p != "/" and path.startswith(p)) for p in FAUST_PATHS)
    }
    assert operations(document()) == ours


def test_document_is_valid_openapi() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(doc)
    for result in schema.get_all_operations():
        operation = result.ok()  # raises on an operation it cannot read
        for status in operation.definition.raw["responses"]:
            assert status.isdigit(), f"{operation.label}: no catch-all answers ({status})"


def test_every_error_answer_is_the_error_schema() -> None:
    doc = document()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and not (path == "/ready" and status == "503"):
                    assert answer == {"$ref": f"#/components/responses/E{status}"}, (
                        method,
                        path,
                        status,
                    )
    for name, answer in doc["components"]["responses"].items():
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, name
