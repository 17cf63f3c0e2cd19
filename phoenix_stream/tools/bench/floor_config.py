"""Configuration of the Faust floor app (``floor_app``), kept apart from the app itself.

The app is built at import from these environment variables; the bench runner needs
their names without building it. Bench-only variables, all required:

    PHOENIX_BENCH_FLOOR_KAFKA_URL   broker URL, kafka://host:port
    PHOENIX_BENCH_FLOOR_APP_ID      app id, also the consumer group
    PHOENIX_BENCH_FLOOR_IN_TOPIC    topic read (raw bytes)
    PHOENIX_BENCH_FLOOR_OUT_TOPIC   topic written (the same bytes)
    PHOENIX_BENCH_FLOOR_PARTITIONS  partitions of both topics
    PHOENIX_BENCH_FLOOR_DATADIR     Faust's data directory
    PHOENIX_BENCH_FLOOR_WEB_PORT    port of Faust's web server on 127.0.0.1
"""

from __future__ import annotations

from collections.abc import Mapping

from phoenix_stream.exceptions import ConfigError

__all__ = ["FLOOR_ENV", "floor_env", "read_floor_env"]

# Field -> environment variable; the only place these names are spelled.
FLOOR_ENV: dict[str, str] = {
    "kafka_url": "PHOENIX_BENCH_FLOOR_KAFKA_URL",
    "app_id": "PHOENIX_BENCH_FLOOR_APP_ID",
    "in_topic": "PHOENIX_BENCH_FLOOR_IN_TOPIC",
    "out_topic": "PHOENIX_BENCH_FLOOR_OUT_TOPIC",
    "partitions": "PHOENIX_BENCH_FLOOR_PARTITIONS",
    "datadir": "PHOENIX_BENCH_FLOOR_DATADIR",
    "web_port": "PHOENIX_BENCH_FLOOR_WEB_PORT",
}


def floor_env(**values: object) -> dict[str, str]:
    """Environment variables for the floor worker from field values (see ``FLOOR_ENV``)."""
    missing = set(FLOOR_ENV) - set(values)
    unknown = set(values) - set(FLOOR_ENV)
    if missing or unknown:
        raise ConfigError(f"floor app config: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return {FLOOR_ENV[name]: str(value) for name, value in values.items()}


def read_floor_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Field values from ``environ``; ConfigError naming the first variable not set."""
    values: dict[str, str] = {}
    for name, variable in FLOOR_ENV.items():
        value = environ.get(variable)
        if not value:
            raise ConfigError(f"{variable} must be set for the bench floor app")
        values[name] = value
    return values
