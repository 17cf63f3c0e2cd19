"""Kafka security settings -> aiokafka options and Faust credentials; the password kept out.

The broker's side (a refused login, ACLs) is tested on the real Kafka in
tests/integration/test_kafka_sasl.py.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.app import create_app
from phoenix_stream.exceptions import ConfigError
from phoenix_stream.settings import Settings
from phoenix_stream.streaming.kafka_auth import (
    PLAINTEXT,
    KafkaAuth,
    client_options,
    faust_credentials,
)

SECRET = "s3cret-Pa55word"
SASL_ENV = {
    "PHOENIX_KAFKA_SECURITY": "SASL_PLAINTEXT",
    "PHOENIX_KAFKA_USERNAME": "worker",
    "PHOENIX_KAFKA_PASSWORD": SECRET,
}


def _settings(env: dict[str, str], tmp_path: Path) -> Settings:
    return Settings.from_env({"PHOENIX_STATE_DIR": str(tmp_path), **env})


def test_plaintext_adds_no_option() -> None:
    assert client_options(PLAINTEXT) == {}
    assert faust_credentials(PLAINTEXT) is None


def test_sasl_scram_512_is_the_default_mechanism(tmp_path: Path) -> None:
    auth = KafkaAuth.from_settings(_settings(SASL_ENV, tmp_path))
    assert client_options(auth) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "worker",
        "sasl_plain_password": SECRET,
    }


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_faust_passes_the_mechanism_to_aiokafka(mechanism: str) -> None:
    # What Faust's own driver makes of our credentials is what its clients get.
    auth = KafkaAuth("SASL_PLAINTEXT", mechanism, "worker", SECRET)
    credentials = faust_credentials(auth)
    assert isinstance(credentials, faust.SASLCredentials)
    options = credentials_to_aiokafka_auth(credentials)
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_username"] == "worker"
    assert options["sasl_plain_password"] == SECRET


def test_sasl_ssl_checks_the_host_name() -> None:
    auth = KafkaAuth("SASL_SSL", "SCRAM-SHA-512", "worker", SECRET)
    context = client_options(auth)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    options = credentials_to_aiokafka_auth(faust_credentials(auth))
    assert options["security_protocol"] == "SASL_SSL"
    assert options["ssl_context"].check_hostname


def test_ssl_only_gives_ssl_credentials() -> None:
    options = credentials_to_aiokafka_auth(faust_credentials(KafkaAuth("SSL")))
    assert options["security_protocol"] == "SSL"
    assert options["ssl_context"].check_hostname


def test_a_missing_ca_file_names_the_variable(tmp_path: Path) -> None:
    auth = KafkaAuth("SSL", ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match="PHOENIX_KAFKA_CA_FILE"):
        client_options(auth)


def test_the_app_gets_the_credentials(tmp_path: Path) -> None:
    app = create_app(_settings(SASL_ENV, tmp_path))
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert app.topic_declarations.auth.username == "worker"
    assert app.runtime.deployments._kafka_auth.username == "worker"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PHOENIX_KAFKA_SECURITY": "SASL"}, "PHOENIX_KAFKA_SECURITY"),
        ({**SASL_ENV, "PHOENIX_KAFKA_SASL_MECHANISM": "GSSAPI"}, "PHOENIX_KAFKA_SASL_MECHANISM"),
        ({**SASL_ENV, "PHOENIX_KAFKA_USERNAME": ""}, "PHOENIX_KAFKA_USERNAME"),
        ({"PHOENIX_KAFKA_SECURITY": "SASL_SSL", "PHOENIX_KAFKA_USERNAME": "w"}, "PASSWORD"),
        ({"PHOENIX_KAFKA_PASSWORD": SECRET}, "PHOENIX_KAFKA_PASSWORD"),
        ({"PHOENIX_KAFKA_CA_FILE": "/ca.pem"}, "PHOENIX_KAFKA_CA_FILE"),
        (
            {"PHOENIX_KAFKA_SECURITY": "SSL", "PHOENIX_KAFKA_CERT_FILE": "/c.pem"},
            "PHOENIX_KAFKA_KEY_FILE",
        ),
    ],
)
def test_wrong_settings_name_the_variable(
    env: dict[str, str], variable: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=variable) as caught:
        _settings(env, tmp_path)
    assert SECRET not in str(caught.value)


def test_password_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(SECRET + "\n", encoding="utf-8")
    env = {**SASL_ENV, "PHOENIX_KAFKA_PASSWORD": "", "PHOENIX_KAFKA_PASSWORD_FILE": str(path)}
    assert _settings(env, tmp_path).kafka_password == SECRET
    with pytest.raises(ConfigError, match="both set"):
        _settings({**env, "PHOENIX_KAFKA_PASSWORD": SECRET}, tmp_path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="PHOENIX_KAFKA_PASSWORD_FILE"):
        _settings(env, tmp_path)


def test_an_unreadable_password_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    env = {**SASL_ENV, "PHOENIX_KAFKA_PASSWORD": "", "PHOENIX_KAFKA_PASSWORD_FILE": str(missing)}
    with pytest.raises(ConfigError, match="PHOENIX_KAFKA_PASSWORD_FILE"):
        _settings(env, tmp_path)


def test_the_password_is_in_no_repr(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings(SASL_ENV, tmp_path)
    auth = KafkaAuth.from_settings(settings)
    credentials = faust_credentials(auth)
    caplog.set_level(logging.DEBUG)
    app = create_app(settings)
    logging.getLogger("test").info("%r %r %r %s", settings, auth, credentials, auth.describe())
    for text in (repr(settings), repr(auth), repr(credentials), auth.describe(), caplog.text):
        assert SECRET not in text
    assert SECRET not in repr(app.conf.broker_credentials)


@given(st.text(max_size=40))
def test_any_security_value_is_accepted_or_named(raw: str) -> None:
    # Outside input: whatever the variable holds, a Settings or a ConfigError naming it.
    try:
        settings = Settings.from_env({"PHOENIX_KAFKA_SECURITY": raw, "PHOENIX_STATE_DIR": "/x"})
    except ConfigError as exc:
        assert "PHOENIX_KAFKA_SECURITY" in str(exc)
    else:
        assert settings.kafka_security in ("PLAINTEXT", "SSL")
