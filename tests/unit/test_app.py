"""The app registers what it should: Faust's discovery would hide an import error."""

from __future__ import annotations

import os
import subprocess
import sys

from phoenix_stream.app import app, settings


def test_registered_agents_topics_and_routes() -> None:
    agents = set(app.agents)
    assert agents == {
        "phoenix.inference",
        "phoenix.sink",
        "phoenix.feedback",
        "phoenix.deployments",
    }
    routes = {route for route, _ in _routes()}
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
    } <= routes
    subscribed = {agent.name: set(agent.channel.topics) for agent in app.agents.values()}
    assert subscribed == {
        "phoenix.inference": {settings.topic("requests")},
        "phoenix.sink": {settings.topic("predictions"), settings.topic("shadow-predictions")},
        "phoenix.feedback": {settings.topic("feedback")},
        "phoenix.deployments": {settings.topic("deployments")},
    }
    assert set(app.tables) == set()  # the drift tables come with the opt-in drift agent


def test_drift_and_retrain_agents_and_tables_when_asked() -> None:
    code = (
        "from phoenix_stream.app import app, settings; "
        "print(sorted((a.name, sorted(a.channel.topics)) for a in app.agents.values())); "
        "print(sorted(app.tables))"
    )
    env = {**os.environ, "PHOENIX_AGENTS": "inference,sink,deployments,feedback,drift,retrain"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
        timeout=60,
    ).stdout  # fmt: skip
    assert "('phoenix.drift-collector', ['phoenix.predictions'])" in out
    assert "('phoenix.drift-windows', ['phoenix.drift-counts'])" in out
    assert "('phoenix.retrain', ['phoenix.retrain'])" in out
    assert "['drift-monitors', 'drift-windows']" in out


def test_producer_waits_for_every_in_sync_replica_and_faust_topics_get_the_replication() -> None:
    assert app.conf.producer_acks == -1
    assert app.conf.topic_replication_factor == settings.topic_replication
    assert app.conf.topic_partitions == settings.topic_partitions


def test_retrain_topic_is_raw_and_keyed_by_model() -> None:
    from phoenix_stream.app import retrain_topic

    assert retrain_topic.get_topic_name() == settings.topic("retrain")
    assert (retrain_topic.key_serializer, retrain_topic.value_serializer) == ("raw", "raw")
    assert retrain_topic.partitions == 1 and not retrain_topic.compacting


def _routes() -> list[tuple[str, object]]:
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


def test_sink_can_be_left_out() -> None:
    code = "from phoenix_stream.app import app; print(sorted(app.agents))"
    env = {**os.environ, "PHOENIX_AGENTS": "inference"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout.strip()
    assert out == "['phoenix.inference']"


def test_worker_defaults_are_added_only_when_missing() -> None:
    from phoenix_stream.cli import worker_argv

    assert worker_argv(["worker"], "debug")[:2] == ["--loglevel", "debug"]
    assert "uvloop" in worker_argv(["worker"])
    mine = ["-L", "aio", "-l", "warn", "worker"]
    assert worker_argv(mine) == mine
