"""Apache Kafka (KRaft) on 127.0.0.1: one JVM per node, each a broker and a controller.

The jars come from ``kafka_jars`` (Maven, cached). Layout under ``root``:
``cluster.json`` (cluster id, version, each node's ports and pid), and per node
``node-N/server.properties``, ``node-N/data`` (formatted once) and ``node-N/kafka.log``.
Unlike Tansu, a restart keeps every topic and committed offset: the nodes come back on
the same ports with the same data. Replication defaults follow the cluster's size
(3 nodes: internal topics replicated 3 times with 2 in sync).

Secured mode (``users`` given): clients log in with SASL SCRAM-SHA-512 on a
SASL_PLAINTEXT listener, the users' SCRAM credentials written into the metadata log when
the storage is formatted (``--add-scram``, KIP-900: KRaft has no other store before the
cluster runs). The controller listener uses SASL PLAIN with the admin user from its JAAS
line (SCRAM credentials live in the metadata the controllers serve, so controllers cannot
use them among themselves). ``StandardAuthorizer`` with no ACL meaning deny; ``admin`` is
the only super user (brokers and controllers log in as it); every other user needs ACLs
(``phoenix_stream.streaming.acls``). The passwords sit in the nodes' server.properties
(mode 0600) and on the format command line, never in the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path

from phoenix_stream.embedded.base import fail
from phoenix_stream.embedded.kafka_config import (
    ADMIN_USER,
    LOG4J2,
    MECHANISM,
    KafkaNode,
    check_users,
    new_cluster_id,
    scram_arguments,
    server_properties,
)
from phoenix_stream.embedded.kafka_jars import KAFKA_VERSION, ensure_kafka_jars, java_executable
from phoenix_stream.embedded.kafka_probe import advertised_brokers
from phoenix_stream.embedded.process import (
    HOST,
    free_port,
    pid_alive,
    pid_cmdline,
    port_is_free,
    spawn_detached,
    stop_pid,
    wait_until,
)
from phoenix_stream.embedded.state import ServiceRecord
from phoenix_stream.exceptions import ServiceError
from phoenix_stream.streaming.kafka_auth import PLAINTEXT, KafkaAuth, client_options

__all__ = ["ADMIN_USER", "KafkaClusterService", "KafkaNode"]

log = logging.getLogger(__name__)

_CLUSTER_FILE = "cluster.json"
# Per node: small enough that three fit beside the workers on this 2-core machine.
_HEAP = ("-Xms128m", "-Xmx512m")
_JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


class KafkaClusterService:
    """Apache Kafka with ``nodes`` KRaft nodes under ``root``; url ``kafka://H:P1,H:P2,...``."""

    name = "broker"
    kind = "kafka"

    def __init__(
        self,
        root: Path,
        nodes: int = 1,
        *,
        version: str = KAFKA_VERSION,
        ready_timeout: float = 120.0,
        jars: Path | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        if not 1 <= nodes <= 9:
            raise ServiceError(f"a Kafka cluster here has 1 to 9 nodes, not {nodes}")
        self.users = dict(users or {})
        if self.users:
            check_users(self.users)
        self.root = root
        self.nodes = nodes
        self.version = version
        self.ready_timeout = ready_timeout
        self._jars = jars
        self.log_path = root / "node-1" / "kafka.log"

    # -- the EmbeddedService protocol -------------------------------------------------

    def start(self, port: int) -> ServiceRecord:
        """Start every node (node 1 on ``port``) and wait until each advertises all of them.

        A cluster started before under ``root`` comes back with its ports and data. On any
        failure every node this call started is stopped again: no half-started cluster.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        java = java_executable()  # before the fetch: a missing JDK is the likelier gap
        jars = self._jars or ensure_kafka_jars(version=self.version)
        cluster_id, nodes = self._layout(port)
        started: list[KafkaNode] = []
        try:
            self._format_all(java, jars, cluster_id, nodes, nodes)
            for node in nodes:
                started.append(self._spawn(java, jars, node, nodes))
            self._save(cluster_id, started)
            self._wait_cluster(started)
        except BaseException:
            for node in started:
                if node.pid is not None:
                    stop_pid(node.pid, f"kafka node {node.node_id}", timeout=5.0)
            self._save(cluster_id, [replace(node, pid=None) for node in started])
            raise
        return ServiceRecord(
            name=self.name,
            url=self.url(started),
            port=started[0].port,
            pid=started[0].pid,
            log=str(self.log_path),
            kind=self.kind,
        )

    def stop(self, record: ServiceRecord) -> None:
        """Stop every node: SIGTERM to all (controlled shutdown), SIGKILL after 30 s."""
        cluster_id, nodes = self._read()
        running = [node for node in nodes if node.pid is not None and self._owns(node)]
        for node in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGTERM)  # type: ignore[arg-type]
        for node in running:
            stop_pid(node.pid, f"kafka node {node.node_id}", timeout=30.0)  # type: ignore[arg-type]
        if cluster_id:
            self._save(cluster_id, [replace(node, pid=None) for node in nodes])

    def alive(self, record: ServiceRecord) -> bool:
        """True when every node of the cluster runs (a killed node makes it not alive)."""
        _, nodes = self._read()
        return bool(nodes) and all(node.pid is not None and self._owns(node) for node in nodes)

    # -- single nodes, for failover tests and operators --------------------------------

    def node_list(self) -> list[KafkaNode]:
        """The nodes as recorded in ``cluster.json`` (pids of the running ones)."""
        return self._read()[1]

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node (a crash: no controlled shutdown)."""
        cluster_id, nodes = self._read()
        node = self._find(nodes, node_id)
        if node.pid is not None and self._owns(node):
            stop_pid(node.pid, f"kafka node {node_id}", timeout=0.0, sig=signal.SIGKILL)
        self._save(cluster_id, [replace(n, pid=None) if n is node else n for n in nodes])

    def start_node(self, node_id: int) -> KafkaNode:
        """Start one recorded node again and wait until the whole cluster advertises it."""
        cluster_id, nodes = self._read()
        node = self._find(nodes, node_id)
        if node.pid is not None and self._owns(node):
            return node
        java = java_executable()
        jars = self._jars or ensure_kafka_jars(version=self.version)
        self._format_all(java, jars, cluster_id, [node], nodes)
        started = self._spawn(java, jars, node, nodes)
        nodes = [started if n is node else n for n in nodes]
        self._save(cluster_id, nodes)
        self._wait_cluster(nodes)
        return started

    @property
    def secured(self) -> bool:
        """True when clients must log in (SASL SCRAM-SHA-512) and ACLs apply."""
        return bool(self.users)

    def auth(self, user: str = ADMIN_USER) -> KafkaAuth:
        """How ``user`` (a user of a secured cluster) logs in; PLAINTEXT when not secured."""
        if not self.secured:
            return PLAINTEXT
        return KafkaAuth("SASL_PLAINTEXT", MECHANISM, user, self.users[user])

    @staticmethod
    def url(nodes: list[KafkaNode]) -> str:
        """``kafka://HOST:PORT,HOST:PORT,...`` for ``nodes``."""
        return "kafka://" + ",".join(f"{HOST}:{node.port}" for node in nodes)

    # -- internals ---------------------------------------------------------------------

    def _layout(self, port: int) -> tuple[str, list[KafkaNode]]:
        """The cluster id and nodes: recorded ones when the size matches, else new ones."""
        cluster_id, nodes = self._read()
        if cluster_id and len(nodes) == self.nodes:
            busy = [
                p
                for node in nodes
                for p in (node.port, node.controller_port)
                if not port_is_free(p)
            ]
            if busy:
                raise ServiceError(
                    f"kafka: the ports {busy} of the cluster in {self.root} are in use by "
                    "another program; stop it, or remove that folder for a new cluster"
                )
            return cluster_id, [replace(node, pid=None) for node in nodes]
        if nodes:
            raise ServiceError(
                f"kafka: {self.root} holds a cluster of {len(nodes)} node(s), not {self.nodes}; "
                "remove that folder for a new cluster of another size"
            )
        taken = {port}
        fresh: list[KafkaNode] = []
        for node_id in range(1, self.nodes + 1):
            client = port if node_id == 1 else _new_port(taken)
            fresh.append(KafkaNode(node_id, client, _new_port(taken)))
        # Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding.
        return new_cluster_id(), fresh

    def _node_dir(self, node: KafkaNode) -> Path:
        return self.root / f"node-{node.node_id}"

    def _properties(self, node: KafkaNode, nodes: list[KafkaNode]) -> str:
        data = self._node_dir(node) / "data"
        admin_password = self.users[ADMIN_USER] if self.secured else None
        return server_properties(node, nodes, data, admin_password)

    def _jvm(self, java: Path, jars: Path, node: KafkaNode) -> list[str]:
        """``java`` with heap, flags, logging and class path for ``node`` (no main class)."""
        log4j = self._node_dir(node) / "log4j2.properties"
        return [
            str(java),
            *_HEAP,
            *_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{jars}/*",
        ]

    def _write_config(self, node: KafkaNode, nodes: list[KafkaNode]) -> Path:
        folder = self._node_dir(node)
        (folder / "data").mkdir(parents=True, exist_ok=True)
        (folder / "log4j2.properties").write_text(LOG4J2, encoding="utf-8")
        config = folder / "server.properties"
        # Owner-only before the content lands: a secured node's file holds the admin password.
        config.touch(mode=0o600, exist_ok=True)
        config.chmod(0o600)
        config.write_text(self._properties(node, nodes), encoding="utf-8")
        return config

    def _format_all(
        self,
        java: Path,
        jars: Path,
        cluster_id: str,
        targets: list[KafkaNode],
        nodes: list[KafkaNode],
    ) -> None:
        """Format each of ``targets`` not yet formatted, all at once (a JVM each)."""
        pending: list[tuple[KafkaNode, subprocess.Popen[str], Path]] = []
        for node in targets:
            config = self._write_config(node, nodes)
            if (self._node_dir(node) / "data" / "meta.properties").is_file():
                continue
            argv = [
                *self._jvm(java, jars, node),
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(config),
                "--ignore-formatted",
                *scram_arguments(self.users),
            ]
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            pending.append((node, proc, self._node_dir(node) / "kafka.log"))
        failed: list[tuple[KafkaNode, Path, str]] = []
        for node, proc, log_path in pending:
            try:
                output, _ = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
                output += "\nstorage format took over 120 s\n"
            with log_path.open("a", encoding="utf-8") as fh:
                fh.write(output)
            if proc.returncode != 0:
                failed.append((node, log_path, f"exit {proc.returncode}"))
        if failed:
            node, log_path, why = failed[0]
            raise fail("kafka", f"storage format of node {node.node_id} failed ({why})", log_path)

    def _spawn(self, java: Path, jars: Path, node: KafkaNode, nodes: list[KafkaNode]) -> KafkaNode:
        config = self._write_config(node, nodes)
        argv = [*self._jvm(java, jars, node), "kafka.Kafka", str(config)]
        log_path = self._node_dir(node) / "kafka.log"
        pid = spawn_detached(argv, log_path, cwd=self._node_dir(node))
        log.info("kafka node %d starting on %s:%d (pid %d)", node.node_id, HOST, node.port, pid)
        return replace(node, pid=pid)

    def _wait_cluster(self, nodes: list[KafkaNode]) -> None:
        """Wait until each running node's metadata names every running node."""
        running = [node for node in nodes if node.pid is not None]
        want = {(HOST, node.port) for node in running}
        options = client_options(self.auth())

        def ready() -> bool:
            return all(
                want <= advertised_brokers(f"{HOST}:{node.port}", timeout_s=2.0, options=options)
                for node in running
            )

        def died() -> bool:
            return any(not pid_alive(node.pid) for node in running)

        began = time.monotonic()
        if wait_until(ready, self.ready_timeout, interval=0.25, abort=died):
            log.info("kafka: %d node(s) ready in %.1f s", len(running), time.monotonic() - began)
            return
        dead = [node for node in running if not pid_alive(node.pid)]
        node = dead[0] if dead else running[0]
        log_path = self._node_dir(node) / "kafka.log"
        if dead:
            raise fail(
                "kafka", f"node {node.node_id} (pid {node.pid}) exited during start", log_path
            )
        raise fail("kafka", f"cluster not ready after {self.ready_timeout:.0f} s", log_path)

    def _owns(self, node: KafkaNode) -> bool:
        """True when ``node.pid`` is alive and runs this node's config (guards pid reuse)."""
        if not pid_alive(node.pid):
            return False
        argv = pid_cmdline(node.pid)  # type: ignore[arg-type]
        return not argv or str(self._node_dir(node) / "server.properties") in argv

    def _find(self, nodes: list[KafkaNode], node_id: int) -> KafkaNode:
        for node in nodes:
            if node.node_id == node_id:
                return node
        raise ServiceError(f"kafka: no node {node_id} in {self.root} (nodes: {len(nodes)})")

    def _read(self) -> tuple[str, list[KafkaNode]]:
        path = self.root / _CLUSTER_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            nodes = [KafkaNode(**entry) for entry in data["nodes"]]
            return str(data["cluster_id"]), nodes
        except FileNotFoundError:
            return "", []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ServiceError(f"kafka: {path} is unreadable ({exc}); remove {self.root}") from exc

    def _save(self, cluster_id: str, nodes: list[KafkaNode]) -> None:
        path = self.root / _CLUSTER_FILE
        payload = {
            "cluster_id": cluster_id,
            "version": self.version,
            "nodes": [asdict(node) for node in nodes],
        }
        tmp = path.with_name(f".{_CLUSTER_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def _new_port(taken: set[int]) -> int:
    for _ in range(100):
        port = free_port()
        if port not in taken:
            taken.add(port)
            return port
    raise ServiceError("kafka: no free TCP port found on 127.0.0.1")
