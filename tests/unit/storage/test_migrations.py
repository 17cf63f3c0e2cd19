"""Loading migration files: naming, order, checksums. Applying them: tests/integration."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from phoenix_stream.exceptions import SinkError
from phoenix_stream.storage.migrations import Migration, load_migrations


@pytest.fixture
def package(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An importable throwaway package with an empty ``sql`` folder."""
    name = f"mig_{uuid.uuid4().hex}"
    root = tmp_path / name
    (root / "sql").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        yield name, root / "sql"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_package_migrations_start_with_predictions() -> None:
    migrations = load_migrations()
    assert migrations[0].version == 1
    assert migrations[0].name == "predictions"
    assert "CREATE TABLE predictions" in migrations[0].sql
    versions = [m.version for m in migrations]
    assert versions == sorted(versions)


def test_loaded_in_version_order_ignoring_other_files(package: tuple[str, Path]) -> None:
    name, folder = package
    (folder / "0010_later.sql").write_text("SELECT 10;")
    (folder / "0002_second.sql").write_text("SELECT 2;")
    (folder / "README.md").write_text("not a migration")
    assert load_migrations(name) == [
        Migration(2, "second", "SELECT 2;"),
        Migration(10, "later", "SELECT 10;"),
    ]


@pytest.mark.parametrize("file_name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql"])
def test_badly_named_sql_file_is_refused(package: tuple[str, Path], file_name: str) -> None:
    name, folder = package
    (folder / file_name).write_text("SELECT 1;")
    with pytest.raises(SinkError, match="NNNN_lowercase_name"):
        load_migrations(name)


def test_duplicate_version_is_refused(package: tuple[str, Path]) -> None:
    name, folder = package
    (folder / "0001_a.sql").write_text("SELECT 1;")
    (folder / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(SinkError, match="two migrations with version 0001"):
        load_migrations(name)


def test_checksum_changes_with_the_text() -> None:
    assert Migration(1, "a", "SELECT 1;").checksum != Migration(1, "a", "SELECT 2;").checksum
    assert Migration(1, "a", "SELECT 1;").checksum == Migration(2, "b", "SELECT 1;").checksum
