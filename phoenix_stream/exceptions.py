"""The project's errors, one root.

PhoenixError
├── ConfigError            a PHOENIX_* variable is missing or invalid
├── ServiceError           an embedded service could not start or stop
├── ValidationError        a request is malformed (field named)
├── UnknownModelError      a request names a model that is not deployed
├── UnknownEntityError     no features for an entity, policy says dead-letter
├── ModelLoadError         a model version could not be loaded
├── InferenceError         running a loaded model failed
├── TrainingError          training or ONNX export of a model failed
├── FeatureStoreError      Redis failed (cause kept)
└── SinkError              PostgreSQL failed (cause kept)
"""

from __future__ import annotations


class PhoenixError(Exception):
    """Root of every error raised by phoenix-stream."""


class ConfigError(PhoenixError):
    """A setting is missing or invalid; the message names the environment variable."""


class ServiceError(PhoenixError):
    """An embedded service could not be started, reached or stopped."""


class ValidationError(PhoenixError):
    """A request is malformed; ``field`` names the offending field (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownModelError(PhoenixError):
    """A request names a model that is not deployed."""


class UnknownEntityError(PhoenixError):
    """The feature store has nothing for an entity and the policy says dead-letter."""


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
