"""compose.yaml and the Dockerfile keep the production stack closed (no Docker engine here:
the files are parsed, not run).

Every secret comes from .env (with a placeholder in the committed .env.example), nothing
is published beyond 127.0.0.1, Grafana has no anonymous access, Redis asks for a password
and the image does not run as root.
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


def _environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    if isinstance(env, list):  # the "NAME=value" list form
        env = dict(item.split("=", 1) for item in env)
    return {str(name): str(value) for name, value in env.items()}


def _env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {name: value for name, value in pairs}


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


def test_every_required_variable_has_a_placeholder_and_env_is_ignored() -> None:
    required = set(REQUIRED.findall((ROOT / "compose.yaml").read_text()))
    example = _env_example()
    assert required <= set(example), f"missing in .env.example: {required - set(example)}"
    assert all(example[name].startswith("replace-me") for name in required)
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored


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
