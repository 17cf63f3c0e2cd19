"""What compose.yaml and the Dockerfile name exists, and the stack starts in order.

No Docker engine here: nothing is built or run. Checked instead, by parsing: every file
the Dockerfile copies is in the repository and in the build context (.dockerignore),
every command the image and the compose services run is a console script of the project
or of a dependency with arguments its parser takes (``phoenix-stream`` through our click
CLI, ``python -c`` code compiled and its imports found), every ``PHOENIX_*`` variable is
one that settings.py reads, every file compose mounts or reads exists, the start order
(depends_on conditions and the health checks they wait for), the shared model registry,
and that Prometheus and Grafana find what their configuration names (promtool checks
deploy/prometheus.yml with the rule files it loads).

What only a Docker host can show is not checked: the third-party images' own commands
(kafka-broker-api-versions.sh, redis-cli, pg_isready, wget) and anything at run time.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from phoenix_stream.commands import cli
from phoenix_stream.settings import ENV, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
BUILT = sorted(name for name, spec in SERVICES.items() if "build" in spec)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# Commands of the base image (python:3.12-slim, Debian) that the Dockerfile's RUN uses,
# with the Debian package each comes from (both are "required": in every Debian image).
BASE_IMAGE_COMMANDS = {"groupadd": "passwd", "useradd": "passwd", "install": "coreutils"}
WEB_PORT = Settings().web_port


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (keyword, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, arguments = line.strip().partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def _argv(arguments: str) -> list[str]:
    """CMD/ENTRYPOINT arguments: the exec form (a JSON list) only, so no shell is involved."""
    argv = json.loads(arguments)
    assert isinstance(argv, list) and all(isinstance(word, str) for word in argv), arguments
    return argv


def _dockerignore_allows(path: str) -> bool:
    """Whether Docker sends ``path`` (relative, /-separated) in the build context.

    Docker's rules: patterns in order, the last that matches the path or one of its
    parent folders decides, ``!`` lets in again; ``*`` stays within a folder, ``**``
    crosses folders.
    """
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        regex = _glob(line.lstrip("!").strip("/"))
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            allowed = negate
    return allowed


def _glob(pattern: str) -> str:
    """A .dockerignore pattern as a regular expression (Go's filepath.Match, plus ``**``)."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def _parse_cli(args: list[str]) -> click.Context:
    """Parse ``phoenix-stream ARGS`` down to its command with our click CLI, running nothing."""
    command: click.Command = cli
    ctx = cli.make_context("phoenix-stream", list(args))
    while isinstance(command, click.Group):
        protected = getattr(ctx, "_protected_args", None) or ctx.protected_args
        name, found, rest = command.resolve_command(ctx, [*protected, *ctx.args])
        assert found is not None and name is not None, args
        command = found
        ctx = found.make_context(name, rest, parent=ctx)
    return ctx


def _check_python_code(code: str) -> None:
    """``python -c CODE``: it compiles and every module it imports is found."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert importlib.util.find_spec(name) is not None, f"python -c imports {name}"


def _check_command(argv: list[str]) -> None:
    """``argv`` runs in our image: a console script there, with arguments it accepts."""
    program, *args = argv
    scripts = PYPROJECT["project"]["scripts"]
    if program in scripts:
        assert scripts[program] == "phoenix_stream.cli:main"
        try:
            _parse_cli(args)
        except click.exceptions.Exit as exc:  # --version, --help: taken, and they exit 0
            assert exc.exit_code == 0, argv
    elif program == "faust":
        faust = importlib.metadata.distribution("faust-streaming")
        assert any(e.name == "faust" for e in faust.entry_points if e.group == "console_scripts")
        assert args[:2] == ["-A", "phoenix_stream.app"], argv
        assert importlib.util.find_spec("phoenix_stream.app") is not None
    elif program == "python":
        assert args[0] == "-c", argv  # the one form used here
        _check_python_code(args[1])
    else:
        pytest.fail(f"{argv} runs {program}, which is not a command of our image")


# The Dockerfile.


def test_every_copied_source_is_in_the_repository_and_the_build_context() -> None:
    copies = [shlex.split(args) for word, args in _instructions() if word == "COPY"]
    assert copies
    for words in copies:
        assert not any(word.startswith("--from") for word in words), words
        for source in (word for word in words[:-1] if not word.startswith("--")):
            path = ROOT / source
            assert path.exists(), f"the Dockerfile copies {source}, which is not in the tree"
            files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
            assert files, f"{source} holds no Python file"
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                assert _dockerignore_allows(relative), f".dockerignore leaves out {relative}"


def test_pip_installs_the_project_from_what_was_copied() -> None:
    # `pip install .` reads pyproject.toml: its readme and package folders must be there.
    copied = {
        Path(source).as_posix()
        for word, args in _instructions()
        if word == "COPY"
        for source in shlex.split(args)[:-1]
    }
    assert "pyproject.toml" in copied
    assert PYPROJECT["project"]["readme"] in copied
    package_dirs = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    assert package_dirs <= copied


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "deploy/secrets/kafka-admin-password",
        ".venv/bin/python",
        ".git/config",
        ".phoenix/services.json",
        "models/credit-risk/1/model.onnx",
        "tests/unit/test_app.py",
        "phoenix_stream/__pycache__/app.cpython-312.pyc",
    ],
)
def test_secrets_and_local_state_stay_out_of_the_build_context(path: str) -> None:
    assert not _dockerignore_allows(path)


def test_the_dockerignore_matcher_follows_dockers_rules() -> None:
    # The matcher above is ours, so it is checked on what its rules must give.
    assert _dockerignore_allows("phoenix_stream/app.py")
    assert _dockerignore_allows("web/health.py")
    assert not _dockerignore_allows("web/__pycache__/health.cpython-312.pyc")
    assert not _dockerignore_allows("compose.yaml")


def test_every_run_command_exists_in_the_image() -> None:
    runs = [args for word, args in _instructions() if word == "RUN"]
    assert runs
    for run in runs:
        for step in re.split(r"&&|;", run):
            argv = shlex.split(step)
            if argv[0] in BASE_IMAGE_COMMANDS:
                continue
            if argv[:2] == ["pip", "install"]:
                # The base image's pip installs the project from the WORKDIR's copy.
                assert argv[-1] == "." and (ROOT / "pyproject.toml").is_file()
                continue
            _check_command(argv)


def test_the_image_starts_a_worker_with_our_console_script() -> None:
    cmds = [_argv(args) for word, args in _instructions() if word == "CMD"]
    assert len(cmds) == 1 and not any(word == "ENTRYPOINT" for word, _ in _instructions())
    assert cmds[0] == ["phoenix-stream", "worker"]
    _check_command(cmds[0])


def test_the_image_sets_only_variables_that_settings_reads() -> None:
    names = [
        pair.split("=", 1)[0]
        for word, args in _instructions()
        if word == "ENV"
        for pair in shlex.split(args)
    ]
    phoenix = [name for name in names if name.startswith("PHOENIX_")]
    assert phoenix and set(phoenix) <= set(ENV.values()), set(phoenix) - set(ENV.values())


# compose.yaml: commands and variables.


def _environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(name): str(value) for name, value in env.items()}


def _env_files(service: str) -> list[Path]:
    entries = SERVICES[service].get("env_file", [])
    entries = [entries] if isinstance(entries, str | dict) else entries
    return [ROOT / (e["path"] if isinstance(e, dict) else e) for e in entries]


@pytest.mark.parametrize("service", BUILT)
def test_each_service_of_our_image_runs_a_command_of_it(service: str) -> None:
    spec = SERVICES[service]
    assert spec["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert "entrypoint" not in spec
    _check_command(spec["command"])


@pytest.mark.parametrize("service", BUILT)
def test_each_service_of_our_image_sets_only_variables_that_settings_reads(service: str) -> None:
    names = set(_environment(service))
    for path in _env_files(service):
        lines = path.read_text(encoding="utf-8").splitlines()
        names |= {line.split("=", 1)[0] for line in lines if "=" in line and line[0] != "#"}
    phoenix = {name for name in names if name.startswith("PHOENIX_")}
    assert phoenix <= set(ENV.values()), phoenix - set(ENV.values())


def test_the_jobs_train_into_the_registry_and_seed_the_feature_store() -> None:
    assert SERVICES["train"]["command"] == ["phoenix-stream", "train"]
    assert SERVICES["seed"]["command"][:2] == ["phoenix-stream", "seed"]
    assert _environment("seed")["PHOENIX_REDIS_URL"].endswith("@redis:6379/0")


def test_the_workers_healthcheck_asks_their_ready_endpoint() -> None:
    spec = SERVICES["worker"]
    test = spec["healthcheck"]["test"]
    assert test[0] == "CMD"
    _check_command(test[1:])  # python -c with urllib: the slim image has no curl
    probe = re.search(r"'(http://[^']+)'", test[-1])
    assert probe, test
    url = urlsplit(probe[1])
    openapi = json.loads((ROOT / "phoenix_stream/webserver/openapi.json").read_text())
    assert url.path == "/ready" and url.path in openapi["paths"]
    assert url.port == int(_environment("worker")["PHOENIX_WEB_PORT"]) == WEB_PORT
    assert spec["ports"] == [f"127.0.0.1:6066-6069:{WEB_PORT}"]


def test_two_workers_run() -> None:
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    assert "container_name" not in SERVICES["worker"]  # a fixed name allows one replica


# compose.yaml: files, volumes, secrets.


def _mounts(service: str) -> list[tuple[str, str]]:
    """(source, target) of each short-syntax volume of ``service``."""
    mounts = []
    for volume in SERVICES[service].get("volumes", []):
        source, target, *_mode = str(volume).split(":")
        mounts.append((source, target))
    return mounts


def test_every_file_compose_reads_exists() -> None:
    for name in SERVICES:
        for source, _target in _mounts(name):
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}: not in the tree"
        for path in _env_files(name):
            assert path.is_file(), f"{name} reads {path.relative_to(ROOT)}: not in the tree"


def test_the_kafka_secret_files_are_the_ones_the_script_makes() -> None:
    # deploy/secrets/ is not in git: deploy/make-kafka-secrets.sh writes kafka-USER-password.
    script = (ROOT / "deploy/make-kafka-secrets.sh").read_text(encoding="utf-8")
    users = re.search(r"^for user in ([\w ]+); do$", script, re.M)
    assert users and 'file="$dir/kafka-$user-password"' in script
    made = {f"deploy/secrets/kafka-{user}-password" for user in users[1].split()}
    assert {spec["file"] for spec in COMPOSE["secrets"].values()} == made


def test_named_volumes_and_secrets_are_declared_and_used() -> None:
    used = {
        source
        for name in SERVICES
        for source, _target in _mounts(name)
        if not source.startswith((".", "/"))
    }
    assert used == set(COMPOSE["volumes"])
    granted = {secret for spec in SERVICES.values() for secret in spec.get("secrets", [])}
    assert granted == set(COMPOSE["secrets"])


@pytest.mark.parametrize(
    ("service", "target"),
    [
        ("kafka", "/var/lib/kafka/data"),
        ("redis", "/data"),
        ("postgres", "/var/lib/postgresql/data"),
        ("prometheus", "/prometheus"),
        ("grafana", "/var/lib/grafana"),
    ],
)
def test_each_store_keeps_its_data_in_a_named_volume(service: str, target: str) -> None:
    assert any(t == target and s in COMPOSE["volumes"] for s, t in _mounts(service))


def test_train_and_the_workers_share_the_model_registry_volume() -> None:
    models_dir = _environment("worker")["PHOENIX_MODELS_DIR"]
    dockerfile_env = " ".join(args for word, args in _instructions() if word == "ENV")
    assert f"PHOENIX_MODELS_DIR={models_dir}" in dockerfile_env  # what train writes to
    for service in ("train", "worker"):
        assert ("models", models_dir) in _mounts(service), service
    assert "models" in COMPOSE["volumes"]


# compose.yaml: start order.


def _depends_on(service: str) -> dict[str, str]:
    deps = SERVICES[service].get("depends_on", {})
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec["condition"] for name, spec in deps.items()}


def test_the_workers_start_after_the_stores_and_the_jobs() -> None:
    assert _depends_on("worker") == {
        "kafka": "service_healthy",
        "kafka-acls": "service_completed_successfully",
        "redis": "service_healthy",
        "postgres": "service_healthy",
        "train": "service_completed_successfully",
        "seed": "service_completed_successfully",
    }
    assert _depends_on("seed") == {"redis": "service_healthy"}
    assert _depends_on("kafka") == {"kafka-format": "service_completed_successfully"}
    assert _depends_on("kafka-acls") == {"kafka": "service_healthy"}
    assert _depends_on("grafana") == {"prometheus": "service_healthy"}


def test_what_is_waited_for_can_be_reached() -> None:
    for name in SERVICES:
        for dependency, condition in _depends_on(name).items():
            assert dependency in SERVICES, f"{name} waits for {dependency}: no such service"
            spec = SERVICES[dependency]
            if condition == "service_healthy":
                assert "healthcheck" in spec, f"{name} waits for {dependency}'s health check"
            if condition == "service_completed_successfully":
                # A one-shot job: restarted, it would never have completed.
                assert spec.get("restart", "no") == "no", dependency


def test_the_start_order_has_no_cycle() -> None:
    done: set[str] = set()
    for _round in range(len(SERVICES)):
        ready = {n for n in SERVICES if n not in done and set(_depends_on(n)) <= done}
        done |= ready
    assert done == set(SERVICES), f"never started: {set(SERVICES) - done}"


# Prometheus and Grafana.


def _mount_target(service: str, source: str) -> str:
    targets = [t for s, t in _mounts(service) if s.rstrip("/") == source]
    assert len(targets) == 1, f"{service} mounts {source} {len(targets)} times"
    return targets[0]


def test_prometheus_loads_the_rule_files_it_is_given() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text(encoding="utf-8"))
    assert _mount_target("prometheus", "./deploy/prometheus.yml") == (
        "/etc/prometheus/prometheus.yml"
    )
    rules_dir = _mount_target("prometheus", "./deploy/prometheus/rules")
    (pattern,) = config["rule_files"]
    assert Path(pattern).parent.as_posix() == rules_dir
    rule_files = sorted((ROOT / "deploy/prometheus/rules").glob(Path(pattern).name))
    assert rule_files, f"no rule file matches {pattern} in deploy/prometheus/rules/"
    for path in rule_files:
        assert yaml.safe_load(path.read_text(encoding="utf-8"))["groups"], path


def test_promtool_accepts_the_prometheus_config_with_its_rules(tmp_path: Path) -> None:
    # promtool (Debian's prometheus package, as tests/unit/test_alert_rules.py uses it)
    # reads the rule files too: pointed at the folder compose mounts them from.
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: apt-get install prometheus", False)
    rules_dir = _mount_target("prometheus", "./deploy/prometheus/rules")
    text = (ROOT / "deploy/prometheus.yml").read_text(encoding="utf-8")
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace(rules_dir, str(ROOT / "deploy/prometheus/rules")))
    done = subprocess.run(
        [promtool, "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 0 rule files found" not in done.stdout


def test_prometheus_scrapes_every_worker_on_its_web_port() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text(encoding="utf-8"))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "phoenix-stream"]
    (discovery,) = job["dns_sd_configs"]
    # The service name resolves to one A record per replica.
    assert discovery["names"] == ["worker"] and discovery["type"] == "A"
    assert discovery["port"] == int(_environment("worker")["PHOENIX_WEB_PORT"]) == WEB_PORT
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboards() -> None:
    provisioning = ROOT / "grafana/provisioning"
    assert _mount_target("grafana", "./grafana/provisioning") == "/etc/grafana/provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yaml").read_text())[
        "datasources"
    ]
    url = urlsplit(source["url"])
    assert url.hostname in SERVICES and url.port == 9090
    assert source["uid"] == "prometheus"  # what every dashboard's panels name
    (provider,) = yaml.safe_load((provisioning / "dashboards/phoenix.yaml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] == _mount_target("grafana", "./grafana/dashboards")
    assert sorted((ROOT / "grafana/dashboards").glob("*.json"))
