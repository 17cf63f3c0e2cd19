"""Settings come from PHOENIX_* only, fail naming the variable, and read services.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phoenix_stream.exceptions import ConfigError
from phoenix_stream.settings import ENV, Settings


def test_defaults_and_parsing(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "PHOENIX_STATE_DIR": str(tmp_path),
            "PHOENIX_WEB_PORT": "7001",
            "PHOENIX_CHALLENGER_SHARE": "0.25",
            "PHOENIX_STRATEGY": "Shadow",
            "PHOENIX_TOPIC_PREFIX": "t1.",
        }
    )
    assert settings.web_port == 7001 and settings.challenger_share == 0.25
    assert settings.strategy == "shadow"
    assert settings.topic("requests") == "t1.requests"
    assert settings.state_dir == tmp_path


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PHOENIX_WEB_PORT", "eighty"),
        ("PHOENIX_WEB_PORT", "0"),
        ("PHOENIX_CHALLENGER_SHARE", "1.5"),
        ("PHOENIX_STRATEGY", "random"),
        ("PHOENIX_UNKNOWN_ENTITY_POLICY", "ignore"),
        ("PHOENIX_KAFKA_URL", "localhost:9092"),
        ("PHOENIX_HEARTBEAT_S", "60"),
        ("PHOENIX_TOPIC_REPLICATION", "0"),
        ("PHOENIX_TOPIC_REPLICATION", "three"),
        ("PHOENIX_TOPIC_MIN_INSYNC", "0"),
        ("PHOENIX_TOPIC_MIN_INSYNC", "2"),  # more than the default replication of 1
        ("PHOENIX_STOP_TIMEOUT_S", "0"),
    ],
)
def test_invalid_value_names_the_variable(variable: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value, "PHOENIX_STATE_DIR": str(tmp_path)})


def test_embedded_addresses_fill_unset_urls(tmp_path: Path) -> None:
    (tmp_path / "services.json").write_text(
        json.dumps(
            {
                "services": {
                    "broker": {"url": "kafka://127.0.0.1:1111"},
                    "redis": {"url": "redis://127.0.0.1:2222/0"},
                    "postgres": {"url": "postgresql://postgres@127.0.0.1:3333/phoenix"},
                }
            }
        )
    )
    env = {"PHOENIX_STATE_DIR": str(tmp_path), "PHOENIX_REDIS_URL": "redis://elsewhere:1/0"}
    settings = Settings.from_env(env)
    assert settings.kafka_url == "kafka://127.0.0.1:1111"
    assert settings.redis_url == "redis://elsewhere:1/0"  # the environment wins
    assert settings.postgres_dsn.endswith(":3333/phoenix")


def test_every_field_has_one_variable() -> None:
    names = set(Settings.__dataclass_fields__)
    assert names == set(ENV)
    assert all(v.startswith("PHOENIX_") for v in ENV.values())
    assert len(set(ENV.values())) == len(ENV)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.web_port = 1  # type: ignore[misc]


def test_an_empty_challenger_version_means_no_challenger() -> None:
    assert Settings.from_env({"PHOENIX_CHALLENGER_VERSION": ""}).challenger_version == ""
    assert Settings.from_env({}).challenger_version == "2"


def test_flags_read_common_spellings_and_refuse_others() -> None:
    assert Settings.from_env({"PHOENIX_AUTO_PROMOTE": "Yes"}).auto_promote is True
    assert Settings.from_env({"PHOENIX_AUTO_PROMOTE": "0"}).auto_promote is False
    with pytest.raises(ConfigError, match="PHOENIX_AUTO_PROMOTE"):
        Settings.from_env({"PHOENIX_AUTO_PROMOTE": "maybe"})


def test_topic_durability_defaults_fit_one_node_and_can_be_raised(tmp_path: Path) -> None:
    defaults = Settings.from_env({"PHOENIX_STATE_DIR": str(tmp_path)})
    assert (defaults.topic_replication, defaults.topic_min_insync) == (1, 1)
    raised = Settings.from_env(
        {
            "PHOENIX_STATE_DIR": str(tmp_path),
            "PHOENIX_TOPIC_REPLICATION": "3",
            "PHOENIX_TOPIC_MIN_INSYNC": "2",
        }
    )
    assert (raised.topic_replication, raised.topic_min_insync) == (3, 2)
