"""Dead letters: what failed, why, where it came from, and its original bytes.

A dead letter must always be deliverable, or the failure it reports would stall the
stream: the original bytes are cut to ``PHOENIX_DEAD_LETTER_MAX_BYTES`` (their full size
and SHA-256 travel along, so the original can still be matched), and so are an
oversized key and the error text. With the default 64 KiB the whole dead letter stays
under 100 KB after base64, far below a stock broker's 1 MiB ``message.max.bytes``.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable

import orjson

from phoenix_stream import metrics
from phoenix_stream.messages.records import InRecord, OutRecord
from phoenix_stream.messages.schemas import DeadLetter

_NAMESPACE = {"ns": DeadLetter._options.namespace}
# Keys partition the dead letter like its input; a longer one is replaced by its digest.
MAX_KEY_BYTES = 1024
MAX_ERROR_CHARS = 2000
MAX_FIELD_CHARS = 256


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class DeadLetters:
    """Builds dead-letter records for one topic, each counted by kind."""

    def __init__(
        self, topic: str, max_bytes: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.topic = topic
        self.max_bytes = max_bytes
        self._clock = clock

    def record(
        self,
        source: InRecord,
        kind: str,
        error: str,
        *,
        field: str | None = None,
        original: bytes | None = None,
        batch_index: int | None = None,
    ) -> OutRecord:
        """A dead letter for ``source`` (or ``original``, a part of it such as a batch item)."""
        payload = (source.value or b"") if original is None else original
        metrics.DEAD_LETTERS.labels(kind=kind).inc()
        key = source.key
        if key is not None and len(key) > MAX_KEY_BYTES:
            key = hashlib.sha256(key).hexdigest().encode()
        value = orjson.dumps(
            {
                "source_topic": source.topic,
                "partition": source.partition,
                "offset": source.offset,
                "original_key": _b64(source.key[:MAX_KEY_BYTES]) if source.key else None,
                "original_value": _b64(payload[: self.max_bytes]),
                "original_size": len(payload),
                "original_sha256": hashlib.sha256(payload).hexdigest(),
                "truncated": len(payload) > self.max_bytes,
                "error_kind": kind,
                "error": _cut(error, MAX_ERROR_CHARS),
                "field": None if field is None else _cut(field, MAX_FIELD_CHARS),
                "batch_index": batch_index,
                "failed_at": self._clock(),
                "__faust": _NAMESPACE,
            }
        )
        return OutRecord(self.topic, key, value)

    def undeliverable(self, record: OutRecord, error: BaseException) -> OutRecord | None:
        """A dead letter for an output the broker will never take; None for a dead letter."""
        if record.topic == self.topic:
            return None  # reporting a dead letter in a dead letter would never end
        source = InRecord(record.topic, -1, -1, record.key, record.value)
        return self.record(source, "undeliverable", f"{type(error).__name__}: {error}")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
