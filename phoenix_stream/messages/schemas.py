"""Message schemas: the ``faust.Record`` classes that travel on phoenix topics.

These classes are the contract for consumers of what the worker writes. Requests have
no Record: ``messages.requests`` decodes them (one or a list of them per record) with
rules a Record cannot state, and its errors name the field. The inference hot path
encodes predictions and dead letters straight to JSON (``serving.encoding``,
``messages.dead_letters``) because building a Record costs about 7 us a message; unit
tests check that those bytes decode into these classes field for field.
"""

from __future__ import annotations

from typing import Optional

import faust

# Faust reads these annotations at class creation, so they use typing forms that
# Python 3.11 can evaluate (no "X | None" strings it cannot resolve lazily).


class Prediction(faust.Record, serializer="json"):
    """A served prediction (also the schema of ``shadow-predictions``)."""

    request_id: str
    entity_id: str
    model: str
    version: str
    variant: str  # champion | challenger
    score: float  # probability of the positive class
    label: int
    features: dict[str, float]  # the vector the model saw, by feature name
    defaults_used: list[str]  # features that fell back to the manifest default
    degraded: bool  # True when the feature store could not be read
    source: str  # kafka | http
    received_at: float  # seconds since epoch, when the worker took the request
    predicted_at: float  # seconds since epoch
    latency_ms: float  # received_at -> predicted_at, ms
    sent_at: Optional[float] = None  # noqa: UP045 - copied from the request


class DeadLetter(faust.Record, serializer="json"):
    """A rejected input: where it came from, why, and its original bytes (base64)."""

    source_topic: str
    partition: int
    offset: int
    original_key: Optional[str]  # noqa: UP045 - base64, None when the record had no key
    original_value: str  # base64 of the original bytes (or the one bad batch item), cut
    original_size: int  # bytes of the original before any cut
    original_sha256: str  # hex digest of the whole original
    truncated: bool  # True when original_value holds only the first bytes
    error_kind: str  # see README "Dead letters" for the kinds
    error: str  # human readable reason, naming the field
    field: Optional[str]  # noqa: UP045 - dotted path of the offending field
    batch_index: Optional[int]  # noqa: UP045 - position inside a batch record
    failed_at: float  # seconds since epoch
