"""Kafka ACLs: the ones the worker needs, and their creation through the Admin API.

aiokafka 0.14's ``AIOKafkaAdminClient`` has no ``create_acls``, but ships the
CreateAcls request (API 30, versions 0 and 1; Kafka 4 answers 1 to 3, KIP-896): it is
sent through the admin client's private ``_send_request``, here only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import CreateAclsRequest

from phoenix_stream.settings import Settings, bootstrap_servers
from phoenix_stream.streaming.kafka_auth import KafkaAuth, client_options

__all__ = ["Acl", "Operation", "Resource", "create_acls", "worker_acls"]


class Resource(IntEnum):
    """Kafka's ResourceType codes."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class Operation(IntEnum):
    """Kafka's AclOperation codes."""

    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8
    DESCRIBE_CONFIGS = 10


_LITERAL = 3
_PREFIXED = 4
_ALLOW = 3


@dataclass(frozen=True)
class Acl:
    """ALLOW ``operation`` on ``resource`` ``name`` (a prefix when ``prefixed``) to ``user``."""

    user: str
    resource: Resource
    name: str
    operation: Operation
    prefixed: bool = False

    def __str__(self) -> str:
        pattern = "prefixed" if self.prefixed else "literal"
        return (
            f"User:{self.user} {self.operation.name} {self.resource.name} {self.name} ({pattern})"
        )


def worker_acls(user: str, settings: Settings) -> list[Acl]:
    """What a worker logged in as ``user`` needs: its topics (``PHOENIX_TOPIC_PREFIX``) and
    Faust's (named after ``PHOENIX_APP_ID``: changelogs, the assignor's leader topic),
    created, described, read and written; its consumer group (the app id) read."""
    topic_operations = (
        Operation.CREATE,
        Operation.DESCRIBE,
        Operation.DESCRIBE_CONFIGS,
        Operation.READ,
        Operation.WRITE,
    )
    acls = [
        Acl(user, Resource.TOPIC, prefix, operation, prefixed=True)
        for prefix in (settings.topic_prefix, settings.app_id)
        for operation in topic_operations
    ]
    acls += [
        Acl(user, Resource.GROUP, settings.app_id, operation, prefixed=True)
        for operation in (Operation.READ, Operation.DESCRIBE)
    ]
    return acls


async def create_acls(kafka_url: str, auth: KafkaAuth, acls: Iterable[Acl]) -> None:
    """Create ``acls`` on the cluster, logged in as ``auth`` (a super user, or one with
    ALTER on the cluster); KafkaError naming the first ACL the broker refused."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers(kafka_url), **client_options(auth)
    )
    await admin.start()
    try:
        for acl in acls:
            request = CreateAclsRequest(
                resource_type=int(acl.resource),
                resource_name=acl.name,
                resource_pattern_type_filter=_PREFIXED if acl.prefixed else _LITERAL,
                principal=f"User:{acl.user}",
                host="*",
                operation=int(acl.operation),
                permission_type=_ALLOW,
            )
            response = await admin._send_request(request)
            for code, message in response.creation_responses:
                if code != 0:
                    raise KafkaError(f"creating the ACL {acl} failed: error {code} {message}")
    finally:
        await admin.close()
