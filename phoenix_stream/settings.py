"""Settings: one frozen object built from ``PHOENIX_*`` environment variables.

Every environment variable the project reads is named in ``ENV`` below and nowhere else.
A wrong value fails at start with the variable's name. Faust's own variables
(``BROKER_URL``, ``WEB_PORT``, ...) are ignored on purpose: the app is built with
``env={}`` so that nothing but this module decides its configuration.

Why one module of about 600 lines: a setting is its field, its variable, its default
and its check; kept together, a newcomer (and the test that every field has exactly one
variable) finds all of them in one place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Literal, TypeVar

from phoenix_stream.credentials import parse_feedback_tokens
from phoenix_stream.exceptions import ConfigError

Strategy = Literal["single", "ab", "canary", "shadow"]
EntityPolicy = Literal["defaults", "dead-letter"]
LagTrust = Literal["auto", "trusted", "untrusted"]
KafkaSecurity = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
KAFKA_SECURITIES: tuple[KafkaSecurity, ...] = ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL")
SASL_MECHANISMS: tuple[SaslMechanism, ...] = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
STRATEGIES: tuple[Strategy, ...] = ("single", "ab", "canary", "shadow")
ENTITY_POLICIES: tuple[EntityPolicy, ...] = ("defaults", "dead-letter")
LAG_TRUSTS: tuple[LagTrust, ...] = ("auto", "trusted", "untrusted")
AGENTS: tuple[str, ...] = ("inference", "sink", "deployments", "drift", "retrain", "feedback")
# Drift monitoring and retraining are opt-in (PHOENIX_AGENTS=...,drift,retrain): they add
# Faust tables (changelog topics, a recovery at every start and rebalance) and training
# jobs inside the worker process; the drift scenario turns them on.
DEFAULT_AGENTS: tuple[str, ...] = ("inference", "sink", "deployments", "feedback")
# The app's topics by short name (full name: PHOENIX_TOPIC_PREFIX + short name); how
# each is created is streaming.topics.app_topic_specs.
TOPICS: tuple[str, ...] = (
    "requests",
    "predictions",
    "shadow-predictions",
    "dead-letters",
    "deployments",
    "feedback",
    "drift-counts",
    "drift",
    "retrain",
)
MIN_CONTROL_KEY_CHARS = 32  # a control key's length: 32 hex characters are 128 bits

# Field name -> environment variable. The only place variable names are spelled.
ENV: dict[str, str] = {
    "kafka_url": "PHOENIX_KAFKA_URL",
    "kafka_security": "PHOENIX_KAFKA_SECURITY",
    "kafka_sasl_mechanism": "PHOENIX_KAFKA_SASL_MECHANISM",
    "kafka_username": "PHOENIX_KAFKA_USERNAME",
    "kafka_password": "PHOENIX_KAFKA_PASSWORD",
    "kafka_password_file": "PHOENIX_KAFKA_PASSWORD_FILE",
    "kafka_ca_file": "PHOENIX_KAFKA_CA_FILE",
    "kafka_cert_file": "PHOENIX_KAFKA_CERT_FILE",
    "kafka_key_file": "PHOENIX_KAFKA_KEY_FILE",
    "redis_url": "PHOENIX_REDIS_URL",
    "postgres_dsn": "PHOENIX_POSTGRES_DSN",
    "state_dir": "PHOENIX_STATE_DIR",
    "models_dir": "PHOENIX_MODELS_DIR",
    "app_id": "PHOENIX_APP_ID",
    "topic_prefix": "PHOENIX_TOPIC_PREFIX",
    "topic_partitions": "PHOENIX_TOPIC_PARTITIONS",
    "topic_replication": "PHOENIX_TOPIC_REPLICATION",
    "topic_min_insync": "PHOENIX_TOPIC_MIN_INSYNC",
    "default_model": "PHOENIX_DEFAULT_MODEL",
    "champion_version": "PHOENIX_CHAMPION_VERSION",
    "challenger_version": "PHOENIX_CHALLENGER_VERSION",
    "strategy": "PHOENIX_STRATEGY",
    "challenger_share": "PHOENIX_CHALLENGER_SHARE",
    "unknown_entity_policy": "PHOENIX_UNKNOWN_ENTITY_POLICY",
    "redis_down_policy": "PHOENIX_REDIS_DOWN_POLICY",
    "feature_max_age_s": "PHOENIX_FEATURE_MAX_AGE_S",
    "redis_timeout_s": "PHOENIX_REDIS_TIMEOUT_S",
    "max_batch_requests": "PHOENIX_MAX_BATCH_REQUESTS",
    "max_record_bytes": "PHOENIX_MAX_RECORD_BYTES",
    "take_max": "PHOENIX_TAKE_MAX",
    "take_within_ms": "PHOENIX_TAKE_WITHIN_MS",
    "fetch_max_wait_ms": "PHOENIX_FETCH_MAX_WAIT_MS",
    "producer_linger_ms": "PHOENIX_PRODUCER_LINGER_MS",
    "sink_batch": "PHOENIX_SINK_BATCH",
    "sink_within_ms": "PHOENIX_SINK_WITHIN_MS",
    "session_timeout_s": "PHOENIX_SESSION_TIMEOUT_S",
    "heartbeat_s": "PHOENIX_HEARTBEAT_S",
    "web_host": "PHOENIX_WEB_HOST",
    "web_port": "PHOENIX_WEB_PORT",
    "onnx_threads": "PHOENIX_ONNX_THREADS",
    "log_level": "PHOENIX_LOG_LEVEL",
    "dead_letter_max_bytes": "PHOENIX_DEAD_LETTER_MAX_BYTES",
    "chunk_requests": "PHOENIX_CHUNK_REQUESTS",
    "http_queue_max": "PHOENIX_HTTP_QUEUE_MAX",
    "http_deadline_ms": "PHOENIX_HTTP_DEADLINE_MS",
    "http_header_timeout_s": "PHOENIX_HTTP_HEADER_TIMEOUT_S",
    "http_body_timeout_s": "PHOENIX_HTTP_BODY_TIMEOUT_S",
    "http_max_connections": "PHOENIX_HTTP_MAX_CONNECTIONS",
    "model_retry_s": "PHOENIX_MODEL_RETRY_S",
    "feedback_orphan_ttl_s": "PHOENIX_FEEDBACK_ORPHAN_TTL_S",
    "evaluation_window": "PHOENIX_EVALUATION_WINDOW",
    "evaluation_interval_s": "PHOENIX_EVALUATION_INTERVAL_S",
    "agents": "PHOENIX_AGENTS",
    "admin_token": "PHOENIX_ADMIN_TOKEN",
    "admin_url": "PHOENIX_ADMIN_URL",
    "feedback_tokens": "PHOENIX_FEEDBACK_TOKENS",
    "feedback_orphan_max": "PHOENIX_FEEDBACK_ORPHAN_MAX",
    "trust_kafka_feedback": "PHOENIX_TRUST_KAFKA_FEEDBACK",
    "auto_promote": "PHOENIX_AUTO_PROMOTE",
    "rollout_interval_s": "PHOENIX_ROLLOUT_INTERVAL_S",
    "canary_step_labels": "PHOENIX_CANARY_STEP_LABELS",
    "retrain_window_s": "PHOENIX_RETRAIN_WINDOW_S",
    "drift_window_s": "PHOENIX_DRIFT_WINDOW_S",
    "drift_min_window": "PHOENIX_DRIFT_MIN_WINDOW",
    "drift_persistence": "PHOENIX_DRIFT_PERSISTENCE",
    "auto_retrain": "PHOENIX_AUTO_RETRAIN",
    "retrain_min_rows": "PHOENIX_RETRAIN_MIN_ROWS",
    "retrain_max_rows": "PHOENIX_RETRAIN_MAX_ROWS",
    "retrain_wait_s": "PHOENIX_RETRAIN_WAIT_S",
    "retrain_min_interval_s": "PHOENIX_RETRAIN_MIN_INTERVAL_S",
    "control_key": "PHOENIX_CONTROL_KEY",
    "control_keys_previous": "PHOENIX_CONTROL_KEYS_PREVIOUS",
    "stop_timeout_s": "PHOENIX_STOP_TIMEOUT_S",
    "stall_timeout_s": "PHOENIX_STALL_TIMEOUT_S",
    "stall_exit_s": "PHOENIX_STALL_EXIT_S",
    "lag_interval_s": "PHOENIX_LAG_INTERVAL_S",
    "lag_trust": "PHOENIX_LAG_TRUST",
}


@dataclass(frozen=True)
class Settings:
    """The whole configuration of a phoenix-stream process; see ``ENV`` for variables."""

    kafka_url: str = "kafka://127.0.0.1:9092"
    # How every Kafka client of the process (worker, CLI, tools) authenticates; see
    # phoenix_stream/streaming/kafka_auth.py. The password is kept out of repr().
    kafka_security: KafkaSecurity = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: str = dataclass_field(default="", repr=False)
    kafka_password_file: str = ""  # read once by from_env into kafka_password
    kafka_ca_file: str = ""  # PEM bundle the broker's certificate must chain to; empty: system
    kafka_cert_file: str = ""  # client certificate (PEM) for mutual TLS, with kafka_key_file
    kafka_key_file: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/phoenix"
    state_dir: Path = Path(".phoenix")
    models_dir: Path = Path("models")
    app_id: str = "phoenix-stream"
    topic_prefix: str = "phoenix."
    topic_partitions: int = 4
    # Replicas of every topic the app creates (its own and Faust's changelogs), and the
    # replicas that must have a record before the broker acknowledges it (producers use
    # acks=all). 1 and 1 fit a one-node cluster; 3 and 2 are usual for three brokers.
    topic_replication: int = 1
    topic_min_insync: int = 1
    default_model: str = "credit-risk"
    champion_version: str = "1"
    challenger_version: str = "2"  # empty string: no challenger
    strategy: Strategy = "ab"
    challenger_share: float = 0.1  # fraction of entities routed to the challenger
    unknown_entity_policy: EntityPolicy = "defaults"
    redis_down_policy: EntityPolicy = "defaults"
    feature_max_age_s: float = 30 * 24 * 3600.0  # older stored features count as stale
    redis_timeout_s: float = 0.25
    max_batch_requests: int = 1000  # requests in one batch record or HTTP batch
    max_record_bytes: int = 1_048_576
    take_max: int = 500  # events buffered per agent batch
    take_within_ms: float = 10.0
    fetch_max_wait_ms: int = 10  # Faust hard-codes 1500 ms; see phoenix_stream.streaming.transport
    producer_linger_ms: float = 0.0  # our own batches are full; linger only delays them
    sink_batch: int = 2000
    sink_within_ms: float = 200.0
    session_timeout_s: float = 6.0  # the embedded broker waits half of it before a join
    heartbeat_s: float = 1.5
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    onnx_threads: int = 1
    log_level: str = "info"
    # Original bytes kept in a dead letter; the rest is cut (size and SHA-256 kept), so a
    # dead letter always fits a stock broker's 1 MiB message.max.bytes.
    dead_letter_max_bytes: int = 65_536
    # Requests scored between two yields to the event loop (bounds /health's wait).
    chunk_requests: int = 500
    http_queue_max: int = 5000  # HTTP requests waiting to be scored; beyond: 503
    http_deadline_ms: float = 5000.0  # an HTTP caller's answer (or 503) within this
    # A connection delivers a complete request head within this many seconds of opening
    # (or of its previous answer: idle keep-alive connections close after it too), and a
    # request's body within http_body_timeout_s of its head; slow clients are cut off.
    http_header_timeout_s: float = 10.0
    http_body_timeout_s: float = 30.0
    http_max_connections: int = 1000  # open HTTP connections; beyond: 503 and closed
    model_retry_s: float = 30.0  # a model version that failed to load is retried after this
    # Feedback whose request has no stored prediction this long after it arrived is deleted.
    feedback_orphan_ttl_s: float = 7 * 24 * 3600.0
    evaluation_window: int = 5000  # latest labelled predictions per (version, variant), rows
    evaluation_interval_s: float = 30.0  # periodic online evaluation of every model
    agents: tuple[str, ...] = DEFAULT_AGENTS  # which agents this worker runs (comma-separated)
    # Bearer token of the admin endpoints (deployments); empty: those endpoints are off.
    admin_token: str = ""
    # Where the CLI's deploy/promote/rollback send their requests; empty: this worker's
    # own address (PHOENIX_WEB_HOST:PHOENIX_WEB_PORT).
    admin_url: str = ""
    # Feedback credentials, "[MODEL=]TOKEN,..." (phoenix_stream.credentials); empty: HTTP
    # feedback is off. Kept out of repr so a logged Settings never shows them.
    feedback_tokens: str = dataclass_field(default="", repr=False)
    # Orphans (Kafka labels whose prediction is not stored yet) held at most; beyond it a
    # label is dead-lettered as orphan_overflow, rows.
    feedback_orphan_max: int = 50_000
    # Whether labels from the Kafka feedback topic count for evaluation, promotion and
    # retraining: only when the broker authenticates who produces to that topic.
    trust_kafka_feedback: bool = False
    # The rollout controller (on the leader worker) promotes, ramps and rolls back
    # challengers on evidence; off, challengers change only by hand.
    auto_promote: bool = False
    rollout_interval_s: float = 5.0  # how often the controller looks, seconds
    canary_step_labels: int = 200  # labelled challenger requests before the next step
    # Retraining trains on the labelled predictions received in the last retrain_window_s
    # seconds: at least retrain_min_rows rows (else the job ends too_little_data), the
    # newest retrain_max_rows at most. A drift alarm's job learns from the traffic after
    # the alarm's window instead, waiting up to retrain_wait_s for its labels.
    retrain_window_s: float = 600.0
    # Drift: tumbling windows of drift_window_s seconds per model version; a window of at
    # least drift_min_window predictions is tested; drift_persistence drifted windows in a
    # row raise the alarm, which asks for a retraining when auto_retrain is on.
    drift_window_s: float = 60.0
    drift_min_window: int = 500
    drift_persistence: int = 2
    auto_retrain: bool = False
    retrain_min_rows: int = 2000
    retrain_max_rows: int = 50_000
    retrain_wait_s: float = 240.0
    # At most one retraining per model trains within this many seconds; more requests
    # end rate_limited (counted), so that a flood of requests is not a flood of jobs.
    retrain_min_interval_s: float = 300.0
    # HMAC-SHA256 key of the control records (deployments, retrain): every writer signs
    # with control_key, every reader accepts it or one of control_keys_previous (comma-
    # separated, for a rotation). A worker does not start without one. Never printed.
    control_key: str = dataclass_field(default="", repr=False)
    control_keys_previous: str = dataclass_field(default="", repr=False)
    # A stopping worker exits within this many seconds, however its stop goes: what it
    # had not finished stays unacknowledged on the topics and is read again.
    stop_timeout_s: float = 25.0
    # An agent that holds a batch without progress (the same await, no retry) or leaves
    # events waiting untaken this long is stalled: /ready fails naming it, the metrics
    # and the log say so. A stall that lasts stall_exit_s while every dependency answers
    # makes the worker exit with status 70 for its supervisor to restart it (0: never).
    stall_timeout_s: float = 20.0
    stall_exit_s: float = 120.0
    # Consumer lag is sampled from the broker every lag_interval_s seconds. lag_trust
    # says whether the broker's end offsets are believed: auto trusts Apache Kafka
    # (known by its cluster id), not Tansu, whose end offsets are wrong.
    lag_interval_s: float = 5.0
    lag_trust: LagTrust = "auto"

    @property
    def previous_control_keys(self) -> tuple[str, ...]:
        """The keys of ``PHOENIX_CONTROL_KEYS_PREVIOUS``, still accepted by readers."""
        return tuple(k.strip() for k in self.control_keys_previous.split(",") if k.strip())

    def topic(self, name: str) -> str:
        """Full topic name for a short name such as ``requests``."""
        return f"{self.topic_prefix}{name}"

    @property
    def kafka_bootstrap(self) -> str:
        """``host:port[,host:port...]`` of ``kafka_url``, as aiokafka's clients take it."""
        return bootstrap_servers(self.kafka_url)

    @property
    def faust_broker(self) -> str:
        """``kafka_url`` as Faust's ``broker`` setting takes a list (``;`` between URLs)."""
        return faust_broker_url(self.kafka_url)

    @property
    def services_file(self) -> Path:
        """Where ``phoenix-stream services up`` writes the embedded services' addresses."""
        return self.state_dir / "services.json"

    def __post_init__(self) -> None:
        # Every check names the variable it is about (ConfigError), grouped by concern.
        self._check_choices()
        self._check_sizes()
        self._check_trust()
        self._check_kafka_auth()
        self._check_lifecycle()
        self._check_timing()
        self._check_addresses()

    def _check_choices(self) -> None:
        _check(self.strategy in STRATEGIES, "strategy", f"one of {', '.join(STRATEGIES)}")
        for name in ("unknown_entity_policy", "redis_down_policy"):
            value = getattr(self, name)
            _check(value in ENTITY_POLICIES, name, f"one of {', '.join(ENTITY_POLICIES)}")
        _check(0.0 <= self.challenger_share <= 1.0, "challenger_share", "between 0 and 1")
        _check(
            bool(self.agents) and set(self.agents) <= set(AGENTS),
            "agents",
            f"a comma-separated subset of {','.join(AGENTS)}",
        )
        _check(self.lag_trust in LAG_TRUSTS, "lag_trust", f"one of {', '.join(LAG_TRUSTS)}")

    def _check_sizes(self) -> None:
        for name in _POSITIVE_INTEGERS:
            _check(getattr(self, name) > 0, name, "a positive integer")
        for name in _POSITIVE_NUMBERS:
            _check(getattr(self, name) > 0, name, "a positive number")
        _check(
            1024 <= self.dead_letter_max_bytes <= 512 * 1024,
            "dead_letter_max_bytes",
            "between 1024 and 524288 (base64 grows it by a third; brokers take 1 MiB)",
        )
        _check(
            1 <= self.topic_min_insync <= self.topic_replication,
            "topic_min_insync",
            "between 1 and PHOENIX_TOPIC_REPLICATION",
        )

    def _check_trust(self) -> None:
        feedback_tokens = parse_feedback_tokens(self.feedback_tokens)  # ConfigError by name
        _check(
            all(token != self.admin_token for _, token in feedback_tokens),
            "feedback_tokens",
            "tokens other than PHOENIX_ADMIN_TOKEN (scopes never share a token)",
        )
        _check(
            not self.control_key or len(self.control_key) >= MIN_CONTROL_KEY_CHARS,
            "control_key",
            f"at least {MIN_CONTROL_KEY_CHARS} characters (e.g. 'openssl rand -hex 32')",
        )
        _check(
            all(len(k) >= MIN_CONTROL_KEY_CHARS for k in self.previous_control_keys),
            "control_keys_previous",
            f"comma-separated keys of at least {MIN_CONTROL_KEY_CHARS} characters each",
        )

    def _check_lifecycle(self) -> None:
        _check(self.retrain_window_s > 0, "retrain_window_s", "a positive number")
        _check(
            self.retrain_min_rows >= 1000,
            "retrain_min_rows",
            "at least 1000 (a 500-row reference sample comes from the training rows)",
        )
        _check(
            self.retrain_min_rows <= self.retrain_max_rows <= 1_000_000,
            "retrain_max_rows",
            "between PHOENIX_RETRAIN_MIN_ROWS and 1000000",
        )
        _check(0 <= self.retrain_wait_s <= 86_400, "retrain_wait_s", "between 0 and 86400")
        _check(self.retrain_min_interval_s >= 0, "retrain_min_interval_s", "zero or more")
        _check(self.drift_min_window >= 0, "drift_min_window", "zero or more")

    def _check_timing(self) -> None:
        _check(1 <= self.stop_timeout_s <= 600, "stop_timeout_s", "between 1 and 600 seconds")
        _check(self.stall_timeout_s > 0, "stall_timeout_s", "a positive number")
        _check(0.1 <= self.lag_interval_s <= 3600, "lag_interval_s", "between 0.1 and 3600 seconds")
        _check(
            self.stall_exit_s == 0 or self.stall_exit_s >= self.stall_timeout_s,
            "stall_exit_s",
            "0 (never exit) or at least PHOENIX_STALL_TIMEOUT_S",
        )
        _check(self.fetch_max_wait_ms >= 0, "fetch_max_wait_ms", "zero or more")
        _check(self.producer_linger_ms >= 0, "producer_linger_ms", "zero or more")
        _check(
            self.heartbeat_s < self.session_timeout_s,
            "heartbeat_s",
            "smaller than PHOENIX_SESSION_TIMEOUT_S",
        )

    def _check_addresses(self) -> None:
        _check(
            _servers_ok(self.kafka_url),
            "kafka_url",
            "kafka://HOST:PORT, or several HOST:PORT joined by commas",
        )
        for name, scheme in (
            ("redis_url", "redis://"),
            ("postgres_dsn", "postgres"),
        ):
            _check(str(getattr(self, name)).startswith(scheme), name, f"a {scheme}... URL")

    def _check_kafka_auth(self) -> None:
        _check(
            self.kafka_security in KAFKA_SECURITIES,
            "kafka_security",
            f"one of {', '.join(KAFKA_SECURITIES)}",
        )
        _check(
            self.kafka_sasl_mechanism in SASL_MECHANISMS,
            "kafka_sasl_mechanism",
            f"one of {', '.join(SASL_MECHANISMS)}",
        )
        sasl = self.kafka_security.startswith("SASL_")
        tls = self.kafka_security.endswith("SSL")
        for name in ("kafka_username", "kafka_password"):
            _check(
                bool(getattr(self, name)) == sasl,
                name,
                "set (PHOENIX_KAFKA_PASSWORD or PHOENIX_KAFKA_PASSWORD_FILE) exactly when "
                "PHOENIX_KAFKA_SECURITY is SASL_PLAINTEXT or SASL_SSL",
            )
        for name in ("kafka_ca_file", "kafka_cert_file", "kafka_key_file"):
            _check(
                not getattr(self, name) or tls,
                name,
                "empty unless PHOENIX_KAFKA_SECURITY is SSL or SASL_SSL",
            )
        _check(
            bool(self.kafka_cert_file) == bool(self.kafka_key_file),
            "kafka_key_file",
            "set together with PHOENIX_KAFKA_CERT_FILE (mutual TLS needs both)",
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``).

        Service addresses not set in the environment come from the embedded services'
        ``services.json`` under the state directory, when it exists.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = env.get(ENV[field.name])
            # Unset or empty keeps the default, except where empty means "none".
            if raw is None or (raw == "" and field.name not in _EMPTY_MEANS_NONE):
                continue
            values[field.name] = _parse(field.name, raw, _CONVERTERS[field.name])
        values.update(_password_from_file(values))
        state_dir = Path(values.get("state_dir", cls.state_dir))
        for name, url in _embedded_addresses(state_dir).items():
            values.setdefault(name, url)
        try:
            return cls(**values)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:  # pragma: no cover - guarded by _parse
            raise ConfigError(str(exc)) from exc

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


# Settings whose empty value is meaningful: no challenger.
_EMPTY_MEANS_NONE = frozenset({"challenger_version"})
_POSITIVE_INTEGERS = (
    "topic_partitions",
    "topic_replication",
    "max_batch_requests",
    "max_record_bytes",
    "take_max",
    "sink_batch",
    "web_port",
    "onnx_threads",
    "dead_letter_max_bytes",
    "chunk_requests",
    "http_queue_max",
    "http_max_connections",
    "evaluation_window",
    "feedback_orphan_max",
)
_POSITIVE_NUMBERS = (
    "feature_max_age_s",
    "redis_timeout_s",
    "take_within_ms",
    "sink_within_ms",
    "session_timeout_s",
    "heartbeat_s",
    "http_deadline_ms",
    "http_header_timeout_s",
    "http_body_timeout_s",
    "model_retry_s",
    "feedback_orphan_ttl_s",
    "evaluation_interval_s",
)


def _password_from_file(values: Mapping[str, Any]) -> dict[str, str]:
    """``kafka_password`` read from ``kafka_password_file`` (one trailing newline dropped)."""
    path = values.get("kafka_password_file")
    if not path:
        return {}
    if values.get("kafka_password"):
        raise ConfigError(
            f"{ENV['kafka_password']} and {ENV['kafka_password_file']} are both set; set one"
        )
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        # The exception's text names the file, never its content.
        raise ConfigError(f"{ENV['kafka_password_file']}: cannot read {path} ({exc})") from exc
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise ConfigError(f"{ENV['kafka_password_file']}: {path} is empty")
    return {"kafka_password": password}


def bootstrap_servers(kafka_url: str) -> str:
    """``kafka://h1:p1,h2:p2`` (or ``;`` between, or a scheme on each) -> ``h1:p1,h2:p2``."""
    parts = kafka_url.replace(";", ",").split(",")
    return ",".join(part.strip().removeprefix("kafka://") for part in parts if part.strip())


def faust_broker_url(kafka_url: str) -> str:
    """``kafka://h1:p1,h2:p2`` -> ``kafka://h1:p1;kafka://h2:p2`` (Faust's list form)."""
    return ";".join(f"kafka://{server}" for server in bootstrap_servers(kafka_url).split(","))


def _servers_ok(kafka_url: str) -> bool:
    if not kafka_url.startswith("kafka://"):
        return False
    servers = bootstrap_servers(kafka_url).split(",")
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            return False
    return bool(servers)


def _check(ok: bool, name: str, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{ENV[name]} must be {expected}")


T = TypeVar("T")


def _parse(name: str, raw: str, convert: Callable[[str], T]) -> T:
    try:
        return convert(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{ENV[name]}={raw!r} is invalid: {exc}") from exc


def _embedded_addresses(state_dir: Path) -> dict[str, str]:
    """Addresses of the embedded services, read from ``services.json`` if present."""
    path = state_dir / "services.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        message = f"{path} is unreadable ({exc}); run 'phoenix-stream services up'"
        raise ConfigError(message) from exc
    services = data.get("services", data) if isinstance(data, dict) else {}
    found: dict[str, str] = {}
    for service, field in (
        ("broker", "kafka_url"),
        ("redis", "redis_url"),
        ("postgres", "postgres_dsn"),
    ):
        entry = services.get(service) if isinstance(services, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("url"), str):
            found[field] = entry["url"]
    return found


def _str(raw: str) -> str:
    return raw


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def _literal(raw: str) -> str:
    return raw.strip().lower()


def _upper(raw: str) -> str:
    return raw.strip().upper()


def _names(raw: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in raw.split(",") if part.strip())


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    field.name: (
        Path
        if field.type in ("Path",)
        else int
        if field.type == "int"
        else float
        if field.type == "float"
        else _flag
        if field.type == "bool"
        else _literal
        if field.type in ("Strategy", "EntityPolicy", "LagTrust")
        else _upper
        if field.type in ("KafkaSecurity", "SaslMechanism")
        else _names
        if field.type == "tuple[str, ...]"
        else _str
    )
    for field in fields(Settings)
}
assert set(_CONVERTERS) == set(ENV), "every setting needs exactly one environment variable"
