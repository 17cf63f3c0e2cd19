"""The project's errors, one root.

PhoenixError
├── ConfigError            a PHOENIX_* variable is missing or invalid
│   ├── TopicMismatch      a topic on the broker differs from the app's declaration
│   └── KafkaAuthError     the broker refused this client's SASL login
├── ServiceError           an embedded service could not start or stop
├── ValidationError        a request is malformed (field named)
│   └── Unauthenticated    a control record's authenticator is missing or wrong
├── UnknownModelError      a request names a model that is not deployed
├── ModelLoadError         a model version could not be loaded
├── InferenceError         running a loaded model failed
├── TrainingError          training or ONNX export of a model failed
├── FeatureStoreError      Redis failed (cause kept)
├── SinkError              PostgreSQL failed (cause kept)
├── DeliveryTimeout        Kafka did not acknowledge an HTTP prediction in time
├── ProduceError           output records could not be delivered (yet)
│   └── Undeliverable      the broker will never take a record (too large, rejected)
├── Overloaded             the HTTP queue is full (503 with Retry-After)
└── ShuttingDown           the worker stops before an answer was ready
"""

from __future__ import annotations


class PhoenixError(Exception):
    """Root of every error raised by phoenix-stream."""


class ConfigError(PhoenixError):
    """A setting is missing or invalid; the message names the environment variable."""


class TopicMismatch(ConfigError):
    """A topic the app uses exists with other partitions or cleanup policy than declared."""


class KafkaAuthError(ConfigError):
    """The broker refused the login; the message names the user and mechanism, not the password."""


class ServiceError(PhoenixError):
    """An embedded service could not be started, reached or stopped."""


class ValidationError(PhoenixError):
    """A request is malformed; ``field`` names the offending field (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Unauthenticated(ValidationError):
    """A control record (deployments, retrain) is not signed by a key the reader accepts."""

    dead_letter_kind = "unauthenticated_control"


class UnknownModelError(PhoenixError):
    """A request names a model that is not deployed."""


class ModelLoadError(PhoenixError):
    """A model version could not be loaded (file missing, bad manifest, ONNX error)."""


class FeatureStoreError(PhoenixError):
    """The online feature store (Redis) failed; the cause is kept."""


class SinkError(PhoenixError):
    """Writing to PostgreSQL failed; the cause is kept."""


class InferenceError(PhoenixError):
    """Running a loaded model failed (bad input shape or an ONNX Runtime error); cause kept."""


class TrainingError(PhoenixError):
    """Training or exporting a model failed, e.g. the ONNX export does not match sklearn."""


class DeliveryTimeout(PhoenixError):
    """Output records were not acknowledged by Kafka in time (HTTP answers 503)."""


class ProduceError(PhoenixError):
    """Output records were not delivered; raised when the worker stops mid-retry."""


class Undeliverable(ProduceError):
    """The broker or producer will never take this record (too large, invalid); cause kept."""


class Overloaded(PhoenixError):
    """Too many HTTP requests are waiting to be scored; the caller should retry later."""


class ShuttingDown(PhoenixError):
    """The worker is stopping before the caller's answer was ready."""
