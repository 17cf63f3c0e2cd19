"""Versioned SQL migrations, applied at start under an advisory lock.

Migrations are package data: ``phoenix_stream/storage/sql/NNNN_name.sql``, read with
importlib.resources, applied in version order, each recorded in ``schema_migrations`` with
a checksum of its text. Everything pending runs in one transaction holding a transaction
advisory lock, so workers starting together apply each migration exactly once and a
failure leaves the schema as it was. An applied migration whose file has since changed
is an error: migrations are append-only.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from phoenix_stream.exceptions import SinkError

__all__ = ["MIGRATION_LOCK_ID", "Migration", "apply_migrations", "load_migrations"]

log = logging.getLogger(__name__)

MIGRATION_LOCK_ID = 0x7068_6F65_6E69_7801
"""pg_advisory_xact_lock key ("phoenix" in hex + 1); any fixed bigint unique to this schema."""

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its version (the NNNN prefix), name and SQL text."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 hex digest of the SQL text, to detect edits of applied migrations."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(
    package: str = "phoenix_stream.storage", folder: str = "sql"
) -> list[Migration]:
    """Read ``<package>/<folder>/NNNN_name.sql`` in version order.

    Raises SinkError for a .sql file with another name or two files with one version.
    """
    root = resources.files(package).joinpath(folder)
    found: dict[int, Migration] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise SinkError(f"migration file {entry.name!r} is not named NNNN_lowercase_name.sql")
        version = int(match["version"])
        if version in found:
            raise SinkError(f"two migrations with version {version:04d}: {entry.name!r}")
        found[version] = Migration(version, match["name"], entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def apply_migrations(conn: Any, migrations: list[Migration] | None = None) -> list[int]:
    """Apply pending ``migrations`` (default: the package's) on an asyncpg connection.

    Returns the versions applied now (empty when up to date). Idempotent and safe to run
    from several processes at once. Raises SinkError if an applied migration was edited;
    asyncpg and OS errors pass through for the caller to classify (retry or not).
    """
    pending_all = load_migrations() if migrations is None else migrations
    applied_now: list[int] = []
    async with conn.transaction():
        # Lock first: a second process waits here, then sees the first one's work.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
        await conn.execute(_CREATE_TABLE)
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied = {int(row["version"]): str(row["checksum"]) for row in rows}
        for migration in pending_all:
            recorded = applied.get(migration.version)
            if recorded is not None:
                if recorded != migration.checksum:
                    raise SinkError(
                        f"migration {migration.version:04d}_{migration.name} changed after it "
                        "was applied; add a new migration instead of editing one"
                    )
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            applied_now.append(migration.version)
            log.info("Applied migration %04d_%s", migration.version, migration.name)
    return applied_now
