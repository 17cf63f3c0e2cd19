"""compose.yaml and the Dockerfile keep the production stack closed (no Docker engine here:
the files are parsed, not run).

Every secret comes from .env (copied from the committed deploy/phoenix.env.example, whose
secrets are empty so that compose refuses to start until each is set) or from a secret
file; no password, token or key is written in compose.yaml or the env files it reads;
nothing is published beyond 127.0.0.1, Grafana has no anonymous access, Redis asks for a
password and the image does not run as root.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# A required variable: ${NAME:?message} (compose stops when it is unset or empty).
REQUIRED = re.compile(r"\$\{(?P<name>[A-Z_]+):\?[^}]*\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$")
ENV_EXAMPLE = ROOT / "deploy" / "phoenix.env.example"
# An optional variable: ${NAME:-} (empty when unset).
OPTIONAL = re.compile(r"\$\{(?P<name>[A-Z_]+):-[^}]*\}")
# A secret's name then its value, within any string of compose.yaml: KEY: value, key=value,
# password="value" (YAML and shell lines alike).
SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?:password|passwd|secret|token|_key)[\"']?[ \t]*[=:][ \t]*\\?[\"']?"
    r"(?P<value>[^\s\"'\\;,\]]*)"
)


def _environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    if isinstance(env, list):  # the "NAME=value" list form
        env = dict(item.split("=", 1) for item in env)
    return {str(name): str(value) for name, value in env.items()}


def _env_example() -> dict[str, str]:
    lines = ENV_EXAMPLE.read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {name: value for name, value in pairs}


def _strings(node: Any) -> list[str]:
    """Every string in a loaded YAML document, and ``key: value`` of each scalar value."""
    if isinstance(node, dict):
        pairs = [f"{k}: {v}" for k, v in node.items() if not isinstance(v, dict | list)]
        return pairs + [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_secret_variables_come_from_the_env_file(service: str) -> None:
    for name, value in _environment(service).items():
        if SECRET_NAME.search(name):
            assert REQUIRED.fullmatch(value), f"{service}.{name} must be ${{VAR:?...}}"


def test_credentials_inside_urls_come_from_the_env_file() -> None:
    for service in SERVICES:
        for name, value in _environment(service).items():
            userinfo = re.search(r"://([^@/\s]*)@", value)
            if userinfo and ":" in userinfo[1]:
                password = userinfo[1].split(":", 1)[1]
                assert REQUIRED.fullmatch(password), f"{service}.{name} has a literal password"


def test_no_secret_is_written_in_compose_yaml() -> None:
    # Each value is a reference: ${VAR...} (compose), $$VAR or $$(cat /run/secrets/...)
    # (the container's shell), %s (printf of a secret file), or nothing (a name only).
    for text in _strings(COMPOSE):
        # A reference's own name and message are no assignment: ${REDIS_PASSWORD:?set ...}
        scanned = re.sub(r"\$\{[^}]*\}", "${VAR}", text)
        for match in SECRET_ASSIGNMENT.finditer(scanned):
            value = match["value"]
            assert value in ("", "%s") or value.startswith("$"), f"literal secret: {match[0]}"
        for userinfo in re.findall(r"://([^@/\s]*)@", text):
            password = userinfo.partition(":")[2]
            assert not password or REQUIRED.fullmatch(password), f"literal password in {text}"


def test_the_secret_scan_finds_a_literal_one() -> None:
    found = [m["value"] for m in SECRET_ASSIGNMENT.finditer('x password="hunter2"; PW_KEY: k')]
    assert found == ["hunter2", "k"]


def test_the_env_files_compose_reads_hold_no_secret() -> None:
    for spec in SERVICES.values():
        for path in spec.get("env_file", []):
            for line in (ROOT / path).read_text().splitlines():
                name, _, value = line.partition("=")
                if line.startswith("#"):
                    continue
                # A secret's file is named instead: PHOENIX_KAFKA_PASSWORD_FILE.
                if name.endswith("_FILE"):
                    assert value.startswith("/run/secrets/"), f"{path}: {line}"
                elif SECRET_NAME.search(name):
                    assert not value, f"{path}: {name} has a value"


def test_every_variable_is_in_the_example_with_its_secrets_empty() -> None:
    text = (ROOT / "compose.yaml").read_text()
    required = set(REQUIRED.findall(text))
    optional = set(OPTIONAL.findall(text))
    example = _env_example()
    assert required | optional == set(example), (
        f"in one only: {(required | optional) ^ set(example)}"
    )
    secrets = {name for name in example if SECRET_NAME.search(name)}
    # Empty, so compose refuses to start ("${VAR:?}": unset or empty) until each is set.
    assert secrets and all(example[name] == "" for name in secrets)
    assert secrets <= required


def test_the_filled_in_env_file_is_ignored_by_git() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and "deploy/secrets/" in ignored


def test_redis_requires_its_password_and_the_worker_uses_it() -> None:
    command = " ".join(SERVICES["redis"]["command"])
    assert "--requirepass" in command
    assert _environment("redis")["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert _environment("worker")["PHOENIX_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")


def test_grafana_has_no_anonymous_access() -> None:
    env = _environment("grafana")
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED", "false") == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert REQUIRED.fullmatch(env["GF_SECURITY_ADMIN_PASSWORD"])


def test_only_the_needed_ports_are_published_and_on_loopback() -> None:
    published = {name: spec.get("ports", []) for name, spec in SERVICES.items()}
    assert {name for name, ports in published.items() if ports} == {
        "worker",
        "prometheus",
        "grafana",
    }
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"
    assert published["prometheus"] == ["127.0.0.1:9090:9090"]
    assert published["grafana"] == ["127.0.0.1:3000:3000"]


def test_the_image_runs_as_a_non_root_user() -> None:
    instructions = [
        line.split(None, 1)
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line and not line.startswith((" ", "#"))
    ]
    users = [args.strip() for word, args in instructions if word == "USER"]
    assert users, "the Dockerfile sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    # The process starts after the last USER: nothing after it switches back.
    last_user = max(i for i, (word, _args) in enumerate(instructions) if word == "USER")
    assert any(word == "CMD" for word, _args in instructions[last_user:])
