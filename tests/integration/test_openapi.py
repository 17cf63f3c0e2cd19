"""The OpenAPI document against a live worker: served as it is, and schemathesis finds no
500, no undocumented status, no answer that breaks the document's schemas.

Checks left out, on purpose: ``positive_data_acceptance`` and ``negative_data_rejection``
ask that every schema-valid body is accepted and every other refused. The validators
know what JSON Schema cannot say here (a feature must exist in the model's manifest, a
version in the registry, an integer id is not written 1.0) and are lenient on purpose
in a few places (``actor`` and ``reason`` are cut to length, not refused); either way
the answer is a documented JSON 4xx, which the checks below hold to.
"""

from __future__ import annotations

import http.client
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from phoenix_stream.tools.worker_process import WorkerProcess
from phoenix_stream.webserver.openapi import document, operations

TOKEN = "openapi-admin-token"
# Per operation (15 of them): the whole run takes about a minute here.
MAX_EXAMPLES = 25
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
async def worker(worker_factory: Any) -> WorkerProcess:
    started: WorkerProcess = await worker_factory.start(admin_token=TOKEN)
    return started


@pytest.fixture(scope="module")
def api_schema(worker: WorkerProcess) -> Any:
    """The document as the worker serves it, aimed at the worker."""
    return schemathesis.openapi.from_url(f"{worker.base_url}/openapi.json")


def test_served_document_is_the_package_one(worker: WorkerProcess) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", worker.settings.web_port, timeout=15)
    try:
        connection.request("GET", "/openapi.json")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("application/json")
        assert orjson.loads(response.read()) == document()
    finally:
        connection.close()


def test_api_conforms(api_schema: Any) -> None:
    # One hypothesis run per operation (schemathesis' pytest plugin needs the schema at
    # collection, before the worker runs, and its lazy fixture loader fails on pytest 9).
    failed: dict[str, str] = {}
    tested = [result.ok() for result in api_schema.get_all_operations()]
    # Every operation but the document itself (schemathesis leaves out its own URL).
    labels = {tuple(operation.label.split(" ", 1)) for operation in tested}
    assert labels == operations(document()) - {("GET", "/openapi.json")}
    for operation in tested:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,  # the same examples every run
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: Any) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS, timeout=15
            )

        try:
            conforms()
        except Exception as exc:  # every operation runs; all failures are reported
            failed[operation.label] = str(exc)[:2000]
    assert not failed, "\n\n".join(f"{label}:\n{why}" for label, why in failed.items())
