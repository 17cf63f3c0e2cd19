"""What the demo prints shows no credential: its services (it printed the raw DSN) and the
console's admin token (kept in a file only the user reads)."""

from __future__ import annotations

import stat
from pathlib import Path

from phoenix_stream.settings import Settings
from phoenix_stream.tools.demo import (
    ADMIN_TOKEN_FILE,
    addresses_line,
    console_line,
    with_demo_admin_token,
)


def test_the_demo_prints_the_addresses_without_their_passwords() -> None:
    settings = Settings(
        redis_url="redis://:redis-pw-1@cache:6379/0",
        postgres_dsn="postgresql://app:pg-pw-1@db:5432/phoenix?sslpassword=key-pw-1",
    )
    line = addresses_line(settings)
    assert line == (
        "  kafka kafka://127.0.0.1:9092  redis redis://:***@cache:6379/0  "
        "postgres postgresql://app:***@db:5432/phoenix?sslpassword=***"
    )


def test_the_demo_makes_an_admin_token_only_its_user_can_read(tmp_path: Path) -> None:
    settings, hint = with_demo_admin_token(Settings(state_dir=tmp_path))
    path = tmp_path / ADMIN_TOKEN_FILE
    assert len(settings.admin_token) >= 24
    assert path.read_text().strip() == settings.admin_token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    line = console_line("http://127.0.0.1:6066", hint)
    assert line.startswith("operator console: http://127.0.0.1:6066/")
    assert str(path) in line and settings.admin_token not in line
    again, _ = with_demo_admin_token(Settings(state_dir=tmp_path))
    assert again.admin_token != settings.admin_token  # a new one for each demo


def test_a_token_the_user_set_is_kept_and_never_printed(tmp_path: Path) -> None:
    token = "a-token-of-the-user-0123456789"
    settings, hint = with_demo_admin_token(Settings(state_dir=tmp_path, admin_token=token))
    assert settings.admin_token == token
    assert token not in console_line("http://127.0.0.1:6066", hint)
    assert not (tmp_path / ADMIN_TOKEN_FILE).exists()
