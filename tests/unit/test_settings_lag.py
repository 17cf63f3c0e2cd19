"""PHOENIX_LAG_INTERVAL_S and PHOENIX_LAG_TRUST: parsed, checked, named when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from phoenix_stream.exceptions import ConfigError
from phoenix_stream.settings import Settings


def test_lag_defaults_and_parsing(tmp_path: Path) -> None:
    default = Settings.from_env({"PHOENIX_STATE_DIR": str(tmp_path)})
    assert (default.lag_interval_s, default.lag_trust) == (5.0, "auto")
    chosen = Settings.from_env(
        {
            "PHOENIX_STATE_DIR": str(tmp_path),
            "PHOENIX_LAG_INTERVAL_S": "0.5",
            "PHOENIX_LAG_TRUST": " Trusted ",
        }
    )
    assert (chosen.lag_interval_s, chosen.lag_trust) == (0.5, "trusted")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PHOENIX_LAG_INTERVAL_S", "0"),
        ("PHOENIX_LAG_INTERVAL_S", "soon"),
        ("PHOENIX_LAG_INTERVAL_S", "nan"),
        ("PHOENIX_LAG_TRUST", "maybe"),
    ],
)
def test_a_wrong_lag_setting_names_its_variable(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({"PHOENIX_STATE_DIR": str(tmp_path), variable: value})
