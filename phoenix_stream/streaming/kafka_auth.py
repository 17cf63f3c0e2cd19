"""How a Kafka client of this project authenticates: SASL (SCRAM or PLAIN) and TLS.

Every client the project opens (the worker's Faust app, its topic admin and deployments
reader, the CLI and the tools) takes its security from one :class:`KafkaAuth`, built
from the ``PHOENIX_KAFKA_*`` settings. :func:`client_options` gives the keyword arguments
of aiokafka's producer, consumer, admin and client; :func:`faust_credentials` the value of
Faust's ``broker_credentials``.

Faust 0.15.3's ``SASLCredentials`` takes ``mechanism`` (``SCRAM-SHA-512`` included) and
its aiokafka driver (``credentials_to_aiokafka_auth``) passes it on as ``sasl_mechanism``,
so SCRAM needs no patch. With an ``ssl_context`` its protocol becomes ``SASL_SSL``.

The password is held with ``repr=False`` and never put in a message: a refused login
names the user and the mechanism only.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import errors as kafka_errors
from aiokafka.conn import create_conn

from phoenix_stream.exceptions import ConfigError, KafkaAuthError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from phoenix_stream.settings import Settings

__all__ = [
    "PLAINTEXT",
    "KafkaAuth",
    "check_login",
    "client_options",
    "faust_credentials",
    "ssl_context",
]


@dataclass(frozen=True)
class KafkaAuth:
    """Security protocol, SASL mechanism and user, and TLS files (PEM paths) of a client."""

    security: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaAuth:
        """The ``PHOENIX_KAFKA_*`` security settings (already validated by Settings)."""
        return cls(
            security=settings.kafka_security,
            mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_username,
            password=settings.kafka_password,
            ca_file=settings.kafka_ca_file,
            cert_file=settings.kafka_cert_file,
            key_file=settings.kafka_key_file,
        )

    @property
    def sasl(self) -> bool:
        """True when the client logs in with SASL."""
        return self.security.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """True when the connection is TLS."""
        return self.security.endswith("SSL")

    def describe(self) -> str:
        """A line for logs and errors: protocol, mechanism and user, never the password."""
        if self.sasl:
            return f"{self.security} {self.mechanism} as {self.username!r}"
        return self.security


PLAINTEXT = KafkaAuth()


def ssl_context(auth: KafkaAuth) -> ssl.SSLContext:
    """A client TLS context: the broker's certificate checked against ``ca_file`` (or the
    system's trust store) and its host name checked; the client certificate for mTLS."""
    try:
        context = ssl.create_default_context(cafile=auth.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"PHOENIX_KAFKA_CA_FILE: cannot load {auth.ca_file} ({exc})") from exc
    # create_default_context already sets both; stated so that no edit loosens them.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if auth.cert_file:
        try:
            context.load_cert_chain(auth.cert_file, auth.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "PHOENIX_KAFKA_CERT_FILE/PHOENIX_KAFKA_KEY_FILE: cannot load "
                f"{auth.cert_file} with {auth.key_file} ({exc})"
            ) from exc
    return context


def client_options(auth: KafkaAuth) -> dict[str, Any]:
    """Keyword arguments for aiokafka's ``AIOKafkaProducer``/``Consumer``/``AdminClient``/
    ``AIOKafkaClient``; empty for PLAINTEXT, so a plain client is built as before."""
    if auth.security == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": auth.security}
    if auth.tls:
        options["ssl_context"] = ssl_context(auth)
    if auth.sasl:
        options["sasl_mechanism"] = auth.mechanism
        options["sasl_plain_username"] = auth.username
        options["sasl_plain_password"] = auth.password
    return options


def faust_credentials(auth: KafkaAuth) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for ``auth``; None for PLAINTEXT."""
    import faust  # here, not at import: the CLI imports this module before Faust picks its loop

    if auth.sasl:
        context = ssl_context(auth) if auth.tls else None
        credentials = faust.SASLCredentials(
            username=auth.username,
            password=auth.password,
            mechanism=auth.mechanism,
            ssl_context=context,
        )
        return credentials
    if auth.tls:
        return faust.SSLCredentials(ssl_context(auth))
    return None


async def check_login(bootstrap: str, auth: KafkaAuth, timeout_s: float = 10.0) -> None:
    """Log in once to the first broker of ``bootstrap`` that answers.

    aiokafka's clients turn a refused login into "Unable to bootstrap" (the cause only in
    their log) and retry; this raises KafkaAuthError at once, naming the user and the
    mechanism. A broker that cannot be reached is left to the caller's retries.
    """
    if not auth.sasl:
        return
    options = client_options(auth)
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000), **options),
                timeout_s,
            )
        except (
            kafka_errors.SaslAuthenticationFailed,
            kafka_errors.AuthenticationFailedError,
            kafka_errors.IllegalSaslStateError,
        ) as exc:
            raise KafkaAuthError(
                f"the broker {host}:{port} refused the login {auth.describe()} ({exc}); check "
                "PHOENIX_KAFKA_USERNAME, PHOENIX_KAFKA_PASSWORD and PHOENIX_KAFKA_SASL_MECHANISM"
            ) from exc
        except kafka_errors.UnsupportedSaslMechanismError as exc:
            raise KafkaAuthError(
                f"the broker {host}:{port} does not offer {auth.mechanism} ({exc}); "
                "check PHOENIX_KAFKA_SASL_MECHANISM"
            ) from exc
        except (OSError, TimeoutError, kafka_errors.KafkaError):
            continue  # not reachable (yet): the caller retries its own way
        conn.close()
        return
