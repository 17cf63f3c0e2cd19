"""Which labels count: the sources of feedback that evaluation, promotion and retraining trust.

Every stored label names its source: ``http:<principal>`` (``POST /v1/feedback`` with a
feedback token, see :mod:`phoenix_stream.credentials`) or ``kafka`` (the ``feedback``
topic, which anyone who can produce to it writes). HTTP labels always count. Kafka labels
count only with ``PHOENIX_TRUST_KAFKA_FEEDBACK=true``, to be set when the broker
authenticates and authorizes who produces to that topic. Labels stored before sources
were recorded (``unrecorded``) never count.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HTTP_PREFIX", "KAFKA", "LabelSources", "http_source"]

HTTP_PREFIX = "http:"
KAFKA = "kafka"


def http_source(principal: str) -> str:
    """The source stored with a label given over HTTP by ``principal``."""
    return f"{HTTP_PREFIX}{principal}"


@dataclass(frozen=True, slots=True)
class LabelSources:
    """The trusted label sources; ``trust_kafka`` from ``PHOENIX_TRUST_KAFKA_FEEDBACK``."""

    trust_kafka: bool = False

    @property
    def names(self) -> list[str]:
        """The trusted sources as outputs report them: ``["http"]`` or ``["http", "kafka"]``."""
        return ["http", KAFKA] if self.trust_kafka else ["http"]

    @property
    def like_patterns(self) -> list[str]:
        """SQL LIKE patterns matching the trusted values of ``feedback.source``."""
        return [f"{HTTP_PREFIX}%", KAFKA] if self.trust_kafka else [f"{HTTP_PREFIX}%"]
