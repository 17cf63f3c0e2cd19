"""``phoenix-stream worker`` refuses to start without a control key, naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from phoenix_stream.cli import main


def test_a_worker_without_a_control_key_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PHOENIX_CONTROL_KEY", raising=False)
    monkeypatch.setenv("PHOENIX_STATE_DIR", str(tmp_path))  # no services.json here
    with pytest.raises(SystemExit) as exited:
        main(["worker"])
    assert "PHOENIX_CONTROL_KEY must be set" in str(exited.value.code)


def test_a_short_control_key_is_refused_by_name(tmp_path: Path) -> None:
    from phoenix_stream.exceptions import ConfigError
    from phoenix_stream.settings import Settings

    with pytest.raises(ConfigError, match="PHOENIX_CONTROL_KEY must be at least 32"):
        Settings.from_env({"PHOENIX_CONTROL_KEY": "short", "PHOENIX_STATE_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="PHOENIX_CONTROL_KEYS_PREVIOUS"):
        Settings.from_env(
            {"PHOENIX_CONTROL_KEY": "k" * 32, "PHOENIX_CONTROL_KEYS_PREVIOUS": "k" * 32 + ",x",
             "PHOENIX_STATE_DIR": str(tmp_path)}
        )  # fmt: skip
    assert "k" * 32 not in repr(Settings(control_key="k" * 32))  # never printed
