"""The console script: our commands only, the worker refused without a control key."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
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


def _cli(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PHOENIX_STATE_DIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def test_a_command_that_needs_no_worker_builds_no_app(tmp_path: Path) -> None:
    """What makes such a command start at once, and keeps the worker's loop choice
    open: neither Faust nor the app is imported on the way to it."""
    done = _cli(
        "import sys\n"
        "from phoenix_stream.cli import main\n"
        "try:\n"
        "    main(['services', 'status'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(sorted(m for m in ('faust', 'phoenix_stream.app') if m in sys.modules))\n",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[:2] == ["broker", "stopped"]
    assert done.stdout.splitlines()[-1] == "[]"


def test_help_lists_our_commands_only_and_version_is_ours(tmp_path: Path) -> None:
    from phoenix_stream.commands import cli

    done = _cli("from phoenix_stream.cli import main; main(['--help'])", tmp_path)
    assert done.returncode == 0, done.stderr
    listed = {
        line.split()[0]
        for line in done.stdout.split("Commands:")[1].splitlines()
        if line.startswith("  ") and line.split()
    }
    assert listed == set(cli.commands)
    assert {"worker", "services", "simulate", "bench"} <= listed
    # Faust's own commands (its "model" and "models" are Faust records, not ML models).
    assert not listed & {"agents", "clean-versions", "livecheck", "model", "models", "send"}
    assert "Welcome" not in done.stdout
    version = _cli("from phoenix_stream.cli import main; main(['--version'])", tmp_path)
    assert version.stdout.strip() == f"phoenix-stream, version {metadata.version('phoenix-stream')}"


def test_worker_help_is_fausts_worker_help_and_needs_no_key(tmp_path: Path) -> None:
    env_code = (
        "import os, sys; os.environ.pop('PHOENIX_CONTROL_KEY', None)\n"
        "sys.argv = ['phoenix-stream']  # as the console script has it\n"
        "from phoenix_stream.cli import main; main(['worker', '--help'])"
    )
    done = _cli(env_code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage: phoenix-stream worker" in done.stdout and "--web-port" in done.stdout
