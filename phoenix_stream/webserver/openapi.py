"""The OpenAPI 3.1 description of the worker's HTTP API (``openapi.json`` beside this).

The document is package data, edited by hand with the views; tests keep it true (its
paths and methods against the routes the app registers, its schemas against real
answers, and schemathesis against a live worker).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import orjson

# Faust's own views (its web site, /router and /table), which are not our API.
FAUST_PATHS = ("/", "/router/", "/table/")


@functools.cache
def document_bytes() -> bytes:
    """The document as served (read once)."""
    return resources.files(__package__).joinpath("openapi.json").read_bytes()


def document() -> dict[str, Any]:
    """The document, decoded (a fresh copy each call)."""
    decoded: dict[str, Any] = orjson.loads(document_bytes())
    return decoded


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation the document describes."""
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
