"""What a KRaft node is told: its ``server.properties``, its logging, its SCRAM users.

Plain functions of the node and the cluster, so they are tested without a JVM; the
cluster service (``embedded.kafka``) writes them and starts the nodes.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from phoenix_stream.embedded.process import HOST
from phoenix_stream.exceptions import ServiceError

__all__ = [
    "ADMIN_USER",
    "LOG4J2",
    "MECHANISM",
    "KafkaNode",
    "check_users",
    "new_cluster_id",
    "scram_arguments",
    "server_properties",
]

ADMIN_USER = "admin"  # the super user of a secured cluster
MECHANISM = "SCRAM-SHA-512"  # how clients of a secured cluster log in
# Characters a password may hold: it is written into --add-scram's [name=..,password=..]
# and a JAAS line between double quotes, neither of which has an escape here.
_PASSWORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~")

LOG4J2 = """\
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass(frozen=True)
class KafkaNode:
    """One node: its id, client and controller ports, and pid (None when stopped)."""

    node_id: int
    port: int
    controller_port: int
    pid: int | None = None


def server_properties(
    node: KafkaNode, nodes: list[KafkaNode], data_dir: Path, admin_password: str | None
) -> str:
    """``server.properties`` of ``node`` in a cluster of ``nodes``; secured (SASL, ACLs)
    when ``admin_password`` is given."""
    size = len(nodes)
    replicas = min(3, size)
    in_sync = min(2, size)
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes)
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "offsets.topic.replication.factor": str(replicas),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(in_sync),
        "default.replication.factor": str(replicas),
        # A new group's first member need not wait 3 s for others (tests start many).
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1",
    }
    if admin_password is not None:
        lines.update(_secured_properties(node, admin_password))
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def _secured_properties(node: KafkaNode, password: str) -> dict[str, str]:
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    return {
        "listeners": (
            f"SASL_PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}"
        ),
        "advertised.listeners": f"SASL_PLAINTEXT://{HOST}:{node.port}",
        "listener.security.protocol.map": (
            "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
        ),
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": MECHANISM,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": (
            f'{scram} required username="{ADMIN_USER}" password="{password}";'
        ),
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": (
            f'{plain} required username="{ADMIN_USER}" password="{password}" '
            f'user_{ADMIN_USER}="{password}";'
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN_USER}",
        "allow.everyone.if.no.acl.found": "false",
    }


def scram_arguments(users: Mapping[str, str]) -> list[str]:
    """``--add-scram`` for every user of a secured cluster (KRaft stores them at format)."""
    arguments: list[str] = []
    for user, password in users.items():
        arguments += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
    return arguments


def check_users(users: Mapping[str, str]) -> None:
    """ServiceError unless ``users`` has the admin and every name and password is usable."""
    if ADMIN_USER not in users:
        raise ServiceError(f"kafka: a secured cluster needs the {ADMIN_USER!r} user")
    for user, password in users.items():
        if not user or not set(user) <= _PASSWORD_CHARS:
            raise ServiceError(f"kafka: user name {user!r} must be letters, digits or -_.~")
        if len(password) < 8 or not set(password) <= _PASSWORD_CHARS:
            # The password itself is not repeated in the message.
            raise ServiceError(
                f"kafka: the password of {user!r} must be 8 or more letters, digits or -_.~"
            )


def new_cluster_id() -> str:
    """A random cluster id as Kafka makes them: 22 URL-safe base64 characters, never
    starting with ``-`` (kafka-storage would read ``--cluster-id -x...`` as an option;
    one id in 64 did, and the format failed)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
