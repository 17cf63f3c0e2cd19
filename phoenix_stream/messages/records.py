"""Kafka records as the streaming code sees them: one consumed, one to produce."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class InRecord:
    """A consumed Kafka record: where it came from and its raw bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float = 0.0  # the record's Kafka timestamp, seconds since epoch

    @classmethod
    def of(cls, message: Any) -> InRecord:
        """The record of a Faust ``Message`` (raw key and value bytes)."""
        return cls(
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value,
            float(getattr(message, "timestamp", None) or 0.0),
        )


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce: topic, key bytes (partitioning), value bytes (None: a tombstone)."""

    topic: str
    key: bytes | None
    value: bytes | None
