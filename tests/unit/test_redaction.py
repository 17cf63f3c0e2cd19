"""redact: no password survives in any form, and the rest of the URL is kept as it was.

The properties build each URL from its parts with the password, then the expected text
with ``***`` in its place: redaction must give exactly that (so nothing else is lost),
and the password must not be in it.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from phoenix_stream.redaction import MASK, LogRedaction, redact, secrets_in, settings_secrets
from phoenix_stream.settings import Settings

# Anything a password may hold, percent-encoded where a URL needs it.
PASSWORDS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1)
# Raw (unencoded) passwords as people paste them: no blank and no "/" (which end a URL's
# authority for every parser); "@", ":", "?" and "#" included.
RAW_PASSWORDS = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/"), min_size=1
)
USERS = st.sampled_from(["", "postgres", "bob", "phoenix_app"])
HOSTS = st.sampled_from(["127.0.0.1:5432", "db", "redis:6379", "k1:9092,k2:9092", "[::1]:5"])
SCHEMES = st.sampled_from(["postgresql", "postgres", "redis", "rediss", "kafka"])
PATHS = st.sampled_from(["", "/phoenix", "/0", "/db?sslmode=require"])
SECRET_PARAMETERS = st.sampled_from(
    ["password", "sslpassword", "PASSWORD", "db_pass", "client_secret", "auth_token", "pwd"]
)
OTHER_QUERY = st.sampled_from(["", "sslmode=require", "db=2", "application_name=phoenix"])


def _absent(secret: str, text: str, expected: str) -> None:
    assert text == expected
    assume(secret not in expected)  # a password like "db" is part of any such URL
    assert secret not in text


@given(SCHEMES, USERS, PASSWORDS, HOSTS, PATHS)
def test_user_info_password_is_masked(
    scheme: str, user: str, password: str, host: str, path: str
) -> None:
    encoded = quote(password, safe="")
    url = f"{scheme}://{quote(user)}:{encoded}@{host}{path}"
    _absent(encoded, redact(url), f"{scheme}://{quote(user)}:{MASK}@{host}{path}")


@given(SCHEMES, USERS, RAW_PASSWORDS, HOSTS, PATHS)
def test_unencoded_password_is_masked(
    scheme: str, user: str, password: str, host: str, path: str
) -> None:
    url = f"{scheme}://{user}:{password}@{host}{path}"
    _absent(password, redact(url), f"{scheme}://{user}:{MASK}@{host}{path}")


@given(SCHEMES, HOSTS, SECRET_PARAMETERS, PASSWORDS, OTHER_QUERY, OTHER_QUERY)
def test_secret_query_parameters_are_masked(
    scheme: str, host: str, name: str, password: str, before: str, after: str
) -> None:
    encoded = quote(password, safe="")
    head = f"{scheme}://user@{host}/phoenix?" + (f"{before}&" if before else "")
    tail = f"&{after}" if after else ""
    url = f"{head}{name}={encoded}{tail}"
    _absent(encoded, redact(url), f"{head}{name}={MASK}{tail}")


@given(PASSWORDS)
def test_libpq_key_value_password_is_masked(password: str) -> None:
    quoted = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    dsn = f"host=db user=bob password={quoted} dbname=phoenix"
    _absent(password, redact(dsn), f"host=db user=bob password='{MASK}' dbname=phoenix")


@given(st.text(), PASSWORDS)
def test_a_dsn_inside_any_message_is_masked(prefix: str, password: str) -> None:
    assume("=" not in prefix and "bearer" not in prefix.lower())  # no secret of its own
    encoded = quote(password, safe="")
    tail = " cannot open PostgreSQL at postgresql://u:{}@db/x: refused"
    expected = redact(prefix) + tail.format(MASK)
    _absent(encoded, redact(prefix + tail.format(encoded)), expected)


@given(st.text())
def test_redact_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://bob:s3cret@host:1/2", "redis://bob:***@host:1/2"),
        ("redis://host:1/0?password=s3cret", "redis://host:1/0?password=***"),
        ("postgresql://postgres@127.0.0.1:5432/phoenix", "postgresql://postgres@127.0.0.1:5432/phoenix"),
        ("postgresql://bob:p@ss@db/phoenix", "postgresql://bob:***@db/phoenix"),
        ("postgresql://db/x?user=a&password=pw&sslpassword=k", "postgresql://db/x?user=a&password=***&sslpassword=***"),
        ("host=db user=bob password=pw dbname=x", "host=db user=bob password=*** dbname=x"),
        ("kafka://app:pw@k1:9092,k2:9092", "kafka://app:***@k1:9092,k2:9092"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
    ],
)  # fmt: skip
def test_known_forms(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_secrets_in_finds_every_form() -> None:
    assert secrets_in("redis://:a%40b@h/0?password=q%26r&token=t") == {
        "a%40b",
        "a@b",
        "q%26r",
        "q&r",
        "t",
    }
    assert secrets_in("postgresql://u@h/x") == set()


def test_settings_secrets_include_urls_and_tokens() -> None:
    settings = Settings(
        redis_url="redis://:redispw@h:1/0",
        postgres_dsn="postgresql://u@h/x?password=pgpw",
        admin_token="admintoken",
    )
    assert {"redispw", "pgpw", "admintoken"} <= settings_secrets(settings)


def test_log_redaction_scrubs_messages_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redaction = LogRedaction({"literal-secret"})
    logger = logging.getLogger("phoenix_stream.test_redaction")
    logger.addFilter(redaction)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("at %s", "postgresql://u@h/x?password=query-secret")
            try:
                raise RuntimeError("driver said literal-secret")
            except RuntimeError:
                logger.exception("failed")
    finally:
        logger.removeFilter(redaction)
    text = caplog.text
    assert "query-secret" not in text and "literal-secret" not in text
    assert "password=***" in text and "driver said ***" in text


def test_installed_redaction_reaches_records_of_every_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = logging.getLogRecordFactory()
    LogRedaction({"installed-secret"}).install()
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger("anything.else").info("token=installed-secret and installed-secret")
    finally:
        logging.setLogRecordFactory(before)
    assert "installed-secret" not in caplog.text


def test_scrubbed_records_format_again_under_modes_formatter() -> None:
    # mode's formatter formats the arguments once more: a scrubbed record must still format.
    from mode.utils.logging import ExtensionFormatter

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "at %s, 100%% sure", ("p",), None)
    LogRedaction().filter(record)
    assert ExtensionFormatter(fmt="%(message)s").format(record) == "at p, 100% sure"


def test_settings_secrets_include_each_key_of_a_list() -> None:
    current = "c" * 40
    old_one, old_two = "o" * 40, "p" * 40
    settings = Settings(control_key=current, control_keys_previous=f"{old_one}, {old_two}")
    assert {current, old_one, old_two} <= settings_secrets(settings)
