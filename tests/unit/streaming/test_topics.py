"""The app's topic declarations, and the check of what the broker has against them."""

from __future__ import annotations

from phoenix_stream.exceptions import ConfigError, TopicMismatch
from phoenix_stream.settings import TOPICS, Settings
from phoenix_stream.streaming import topics
from phoenix_stream.streaming.topics import TopicSpec, TopicState, app_topic_specs


def test_every_topic_is_declared_with_the_settings_durability() -> None:
    settings = Settings(
        topic_prefix="x.", topic_partitions=6, topic_replication=3, topic_min_insync=2
    )
    specs = app_topic_specs(settings)
    assert set(specs) == set(TOPICS)
    assert len(TOPICS) == len(set(TOPICS)) == 9  # settings.TOPICS names them
    assert {s.name for s in specs.values()} == {f"x.{short}" for short in specs}
    assert {short: s.partitions for short, s in specs.items()} == {
        short: 1 if short in ("deployments", "retrain") else 6 for short in specs
    }
    assert {s.replication for s in specs.values()} == {3}
    assert [short for short, s in specs.items() if s.compacted] == ["deployments"]
    assert specs["deployments"].configs() == {
        "cleanup.policy": "compact",
        "min.insync.replicas": "2",
    }
    assert specs["requests"].configs()["cleanup.policy"] == "delete"


SPEC = TopicSpec("p.deployments", 1, 1, 1, compacted=True, partitions_from="fixed by the app")


def test_a_topic_as_declared_passes() -> None:
    state = TopicState(SPEC.name, 1, 1, {"cleanup.policy": "compact", "min.insync.replicas": "1"})
    assert topics._check(SPEC, state) == ([], [])


def test_other_partitions_or_cleanup_policy_are_errors_naming_the_topic() -> None:
    state = TopicState(SPEC.name, 4, 1, {"cleanup.policy": "delete", "min.insync.replicas": "1"})
    errors, warnings = topics._check(SPEC, state)
    assert errors == [
        "p.deployments has 4 partitions, the app declares 1 (fixed by the app): recreate "
        "the topic or change the setting",
        "p.deployments has cleanup.policy=delete, the app declares compact: alter the "
        "topic's config",
    ]
    assert warnings == []
    assert issubclass(TopicMismatch, ConfigError)


def test_other_replication_is_a_warning_and_unreported_configs_are_said_unchecked() -> None:
    errors, warnings = topics._check(SPEC, TopicState(SPEC.name, 1, 3, None))
    assert errors == []
    assert warnings == [
        "p.deployments has replication factor 3, PHOENIX_TOPIC_REPLICATION says 1",
        "p.deployments: the broker does not report cleanup.policy; not checked",
        "p.deployments: the broker does not report min.insync.replicas; not checked",
    ]
