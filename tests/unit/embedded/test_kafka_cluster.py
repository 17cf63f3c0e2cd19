"""The embedded Apache Kafka without a JVM: Java detection, node configs, clear refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from phoenix_stream.embedded import kafka_jars
from phoenix_stream.embedded.kafka import KafkaClusterService
from phoenix_stream.embedded.kafka_config import KafkaNode
from phoenix_stream.embedded.kafka_jars import _java_major, ensure_kafka_jars, java_executable
from phoenix_stream.exceptions import ServiceError


@pytest.mark.parametrize(
    ("banner", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_402"', 8),
        ("no banner", None),
    ],
)
def test_java_major_version(banner: str, major: int | None) -> None:
    assert _java_major(banner) == major


def test_no_java_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match=r"no java was found.*openjdk-17"):
        java_executable()


def test_an_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'java version \"1.8.0_402\"' >&2\n")
    fake.chmod(0o755)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match="needs Java 17"):
        java_executable()


def test_no_maven_and_no_cache_names_both(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ServiceError, match=r"not cached in .* Maven is not installed"):
        ensure_kafka_jars(tmp_path / "cache")
    assert not (tmp_path / "cache" / f"kafka-{kafka_jars.KAFKA_VERSION}" / "complete").exists()


def test_a_failed_fetch_leaves_no_marker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text("#!/bin/sh\necho 'Could not resolve dependencies' >&2\nexit 1\n")
    mvn.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with pytest.raises(ServiceError, match=r"Maven could not fetch(.|\n)*Could not resolve"):
        ensure_kafka_jars(tmp_path / "cache")
    root = tmp_path / "cache" / f"kafka-{kafka_jars.KAFKA_VERSION}"
    assert not (root / "complete").exists() and not (root / "lib").exists()


def test_a_cached_folder_needs_no_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = tmp_path / "cache" / f"kafka-{kafka_jars.KAFKA_VERSION}"
    (root / "lib").mkdir(parents=True)
    (root / "complete").write_text("kafka_2.13-x.jar\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no mvn: must not be needed
    assert ensure_kafka_jars(tmp_path / "cache") == root / "lib"


def test_node_configs_of_a_three_node_cluster(tmp_path: Path) -> None:
    cluster = KafkaClusterService(tmp_path, 3)
    nodes = [KafkaNode(i, 9000 + i, 9100 + i) for i in (1, 2, 3)]
    text = cluster._properties(nodes[1], nodes)
    config = dict(line.split("=", 1) for line in text.splitlines())
    assert config["node.id"] == "2"
    assert config["controller.quorum.voters"] == (
        "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    )
    assert config["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9002"
    assert config["offsets.topic.replication.factor"] == "3"
    assert config["transaction.state.log.min.isr"] == "2"
    assert config["log.dirs"] == str(tmp_path / "node-2" / "data")


def test_one_node_replicates_internal_topics_once(tmp_path: Path) -> None:
    cluster = KafkaClusterService(tmp_path, 1)
    node = KafkaNode(1, 9001, 9101)
    config = dict(line.split("=", 1) for line in cluster._properties(node, [node]).splitlines())
    assert config["offsets.topic.replication.factor"] == "1"
    assert config["transaction.state.log.min.isr"] == "1"


def test_a_folder_of_another_size_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text(
        json.dumps(
            {
                "cluster_id": "abc",
                "version": "x",
                "nodes": [{"node_id": 1, "port": 1, "controller_port": 2, "pid": None}],
            }
        )
    )
    with pytest.raises(ServiceError, match="holds a cluster of 1 node"):
        KafkaClusterService(tmp_path, 3)._layout(9092)


def test_cluster_url_lists_every_node() -> None:
    nodes = [KafkaNode(1, 1001, 2001), KafkaNode(2, 1002, 2002)]
    assert KafkaClusterService.url(nodes) == "kafka://127.0.0.1:1001,127.0.0.1:1002"


@pytest.mark.parametrize("nodes", [0, 10])
def test_cluster_size_is_bounded(tmp_path: Path, nodes: int) -> None:
    with pytest.raises(ServiceError, match="1 to 9 nodes"):
        KafkaClusterService(tmp_path, nodes)


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """kafka-storage reads ``--cluster-id -x...`` as an option: the format failed (CI)."""
    import uuid

    from phoenix_stream.embedded import kafka_config

    # 0xf8 in the first byte encodes to "-" first: the first draw must be refused.
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(int=1)])
    monkeypatch.setattr(kafka_config.uuid, "uuid4", lambda: next(draws))
    cluster_id = kafka_config.new_cluster_id()
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22
