"""The app registers what it should: Faust's discovery would hide an import error.

Each test builds its own app with ``create_app`` from its own settings; only the module
attribute ``phoenix_stream.app.app`` (what ``faust -A`` finds) is read from the
environment, in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from phoenix_stream.app import PhoenixApp, create_app
from phoenix_stream.settings import AGENTS, Settings


def _app(tmp_path: Path, **overrides: object) -> PhoenixApp:
    return create_app(Settings(state_dir=tmp_path, **overrides))  # type: ignore[arg-type]


def test_registered_agents_topics_and_routes(tmp_path: Path) -> None:
    app = _app(tmp_path)
    settings = app.settings
    agents = set(app.agents)
    assert agents == {
        "phoenix.inference",
        "phoenix.sink",
        "phoenix.feedback",
        "phoenix.deployments",
    }
    routes = {route for route, _ in _routes(app)}
    assert {
        "/v1/predict",
        "/v1/predict/batch",
        "/v1/models",
        "/health",
        "/ready",
        "/metrics",
        "/v1/feedback",
        "/v1/models/{model}/evaluation",
        "/v1/deployments",
        "/v1/deployments/{model}",
        "/v1/deployments/{model}/promote",
        "/v1/deployments/{model}/rollback",
        "/v1/models/{model}/retrain",
        "/v1/drift/{model}",
        "/openapi.json",
    } <= routes
    subscribed = {agent.name: set(agent.channel.topics) for agent in app.agents.values()}
    assert subscribed == {
        "phoenix.inference": {settings.topic("requests")},
        "phoenix.sink": {settings.topic("predictions"), settings.topic("shadow-predictions")},
        "phoenix.feedback": {settings.topic("feedback")},
        "phoenix.deployments": {settings.topic("deployments")},
    }
    assert set(app.tables) == set()  # the drift tables come with the opt-in drift agent


def test_drift_and_retrain_agents_and_tables_when_asked(tmp_path: Path) -> None:
    app = _app(tmp_path, agents=AGENTS)
    subscribed = {agent.name: sorted(agent.channel.topics) for agent in app.agents.values()}
    assert subscribed["phoenix.drift-collector"] == ["phoenix.predictions"]
    assert subscribed["phoenix.drift-windows"] == ["phoenix.drift-counts"]
    assert subscribed["phoenix.retrain"] == ["phoenix.retrain"]
    assert sorted(app.tables) == ["drift-monitors", "drift-windows"]


def test_two_apps_from_two_settings_share_nothing(tmp_path: Path) -> None:
    first = _app(tmp_path / "a", agents=("inference",), topic_prefix="one.")
    second = _app(tmp_path / "b", agents=AGENTS, topic_prefix="two.")
    assert sorted(first.agents) == ["phoenix.inference"]
    assert len(second.agents) == len(AGENTS) + 1  # drift has two agents
    assert first.phoenix_topics.requests.get_topic_name() == "one.requests"
    assert second.phoenix_topics.requests.get_topic_name() == "two.requests"
    assert first.runtime is not second.runtime and first.tokens is not second.tokens
    assert set(first.tables) == set()


def test_importing_the_module_builds_no_app() -> None:
    code = (
        "import phoenix_stream.app as m; "
        "print(m._app_from_env.cache_info().currsize); "
        "a = m.app; print(a is m.app, m._app_from_env.cache_info().currsize)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["0", "True", "1"]


def test_producer_waits_for_every_in_sync_replica_and_faust_topics_get_the_replication(
    tmp_path: Path,
) -> None:
    app = _app(tmp_path, topic_replication=3, topic_partitions=6)
    assert app.conf.producer_acks == -1
    assert app.conf.topic_replication_factor == 3
    assert app.conf.topic_partitions == 6


def test_retrain_topic_is_raw_and_keyed_by_model(tmp_path: Path) -> None:
    app = _app(tmp_path)
    retrain_topic = app.phoenix_topics.retrain
    assert retrain_topic.get_topic_name() == app.settings.topic("retrain")
    assert (retrain_topic.key_serializer, retrain_topic.value_serializer) == ("raw", "raw")
    assert retrain_topic.partitions == 1 and not retrain_topic.compacting


def _routes(app: PhoenixApp) -> list[tuple[str, object]]:
    return [(pattern, view) for pattern, view in app.web.views.items()]


def test_project_commands_are_on_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "phoenix_stream", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for command in (
        "worker",
        "services",
        "demo",
        "simulate",
        "bench",
        "seed",
        "train",
        "registry",
        "retrain",
        "clear-deployment",
        "drift",
    ):
        assert f"  {command}" in out, out


def test_faust_variables_do_not_override_ours() -> None:
    code = (
        "from phoenix_stream.app import app; "
        "print(app.conf.broker[0], app.conf.web_port, app.conf.id)"
    )
    env = {
        **os.environ,
        "BROKER_URL": "kafka://elsewhere:1",
        "WEB_PORT": "1234",
        "APP_ID_FORMAT": "{id}-oops",
        "PHOENIX_KAFKA_URL": "kafka://127.0.0.1:9999",
        "PHOENIX_WEB_PORT": "7777",
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout.split()
    assert out == ["kafka://127.0.0.1:9999", "7777", "phoenix-stream"]


def test_sink_can_be_left_out(tmp_path: Path) -> None:
    assert sorted(_app(tmp_path, agents=("inference",)).agents) == ["phoenix.inference"]


def test_worker_defaults_are_added_only_when_missing() -> None:
    from phoenix_stream.cli import worker_argv

    assert worker_argv(["worker"], "debug")[:2] == ["--loglevel", "debug"]
    assert "uvloop" in worker_argv(["worker"])
    mine = ["-L", "aio", "-l", "warn", "worker"]
    assert worker_argv(mine) == mine
