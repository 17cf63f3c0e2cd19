"""The HTTP server's read timeouts and connection bound: defaults, and bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from phoenix_stream.exceptions import ConfigError
from phoenix_stream.settings import Settings
from phoenix_stream.webserver.driver import application_options


def test_defaults_reach_the_aiohttp_app(tmp_path: Path) -> None:
    settings = Settings.from_env({"PHOENIX_STATE_DIR": str(tmp_path)})
    assert (settings.http_header_timeout_s, settings.http_body_timeout_s) == (10.0, 30.0)
    assert settings.http_max_connections == 1000
    options = application_options(
        Settings.from_env(
            {"PHOENIX_STATE_DIR": str(tmp_path), "PHOENIX_HTTP_HEADER_TIMEOUT_S": "2.5"}
        )
    )
    assert options["handler_args"] == {"keepalive_timeout": 2.5}
    assert options["client_max_size"] == settings.max_record_bytes


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PHOENIX_HTTP_HEADER_TIMEOUT_S", "0"),
        ("PHOENIX_HTTP_BODY_TIMEOUT_S", "-1"),
        ("PHOENIX_HTTP_BODY_TIMEOUT_S", "soon"),
        ("PHOENIX_HTTP_MAX_CONNECTIONS", "0"),
    ],
)
def test_invalid_value_names_the_variable(variable: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value, "PHOENIX_STATE_DIR": str(tmp_path)})
