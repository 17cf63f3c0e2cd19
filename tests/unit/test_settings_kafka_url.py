"""PHOENIX_KAFKA_URL: one broker or a list, as aiokafka and Faust each take it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.exceptions import ConfigError
from phoenix_stream.settings import Settings, bootstrap_servers, faust_broker_url


def test_one_broker() -> None:
    settings = Settings(kafka_url="kafka://127.0.0.1:9092")
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.faust_broker == "kafka://127.0.0.1:9092"


@pytest.mark.parametrize(
    "url",
    [
        "kafka://a:1,b:2,c:3",
        "kafka://a:1;b:2;c:3",
        "kafka://a:1;kafka://b:2;kafka://c:3",
        "kafka://a:1, b:2 ,c:3",
    ],
)
def test_a_list_in_each_spelling(url: str) -> None:
    settings = Settings(kafka_url=url)
    assert settings.kafka_bootstrap == "a:1,b:2,c:3"
    assert settings.faust_broker == "kafka://a:1;kafka://b:2;kafka://c:3"


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:9092",
        "kafka://",
        "kafka://host",
        "kafka://host:0",
        "kafka://h:1,:2",
        "kafka://h:x",
    ],
)
def test_a_malformed_url_names_the_variable(url: str) -> None:
    with pytest.raises(ConfigError, match="PHOENIX_KAFKA_URL"):
        Settings(kafka_url=url)


hosts = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True)
ports = st.integers(1, 65535)


@given(st.lists(st.tuples(hosts, ports), min_size=1, max_size=5))
def test_every_list_survives_both_forms(servers: list[tuple[str, int]]) -> None:
    joined = ",".join(f"{host}:{port}" for host, port in servers)
    url = f"kafka://{joined}"
    assert bootstrap_servers(url) == joined
    assert bootstrap_servers(faust_broker_url(url)) == joined
    assert Settings(kafka_url=url).kafka_bootstrap == joined


@given(st.text(max_size=40))
def test_any_text_is_accepted_or_refused_by_name(raw: str) -> None:
    try:
        settings = Settings(kafka_url=raw)
    except ConfigError as exc:
        assert "PHOENIX_KAFKA_URL" in str(exc)
    else:
        assert settings.kafka_bootstrap
