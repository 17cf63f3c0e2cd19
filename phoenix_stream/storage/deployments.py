"""The audit trail of deployment decisions in PostgreSQL (table ``deployment_history``).

Written once per (model, generation) by the ``deployments`` agent, whatever the number of
workers or redeliveries; read by ``GET /v1/deployments``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson

from phoenix_stream.lifecycle.deployment_record import DeploymentRecord
from phoenix_stream.storage.database import Database

# One statement for a batch; steps travel as array literals ("{0.01,0.05}"), since
# unnest() cannot take an array of arrays of different lengths.
_INSERT = (
    "INSERT INTO deployment_history (model, generation, champion, challenger, strategy, "
    "share, actor, reason, evidence, steps, step, decided_at, challenger_since) "
    "SELECT model, generation, champion, challenger, strategy, share, actor, reason, "
    "evidence, steps::float8[], step, to_timestamp(decided_at), "
    "CASE WHEN challenger IS NULL THEN NULL ELSE to_timestamp(challenger_since) END "
    "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], "
    "$6::float8[], $7::text[], $8::text[], $9::jsonb[], $10::text[], $11::int[], "
    "$12::float8[], $13::float8[]) AS r(model, generation, champion, challenger, strategy, "
    "share, actor, reason, evidence, steps, step, decided_at, challenger_since) "
    "ON CONFLICT (model, generation) DO NOTHING"
)


class DeploymentHistory:
    """Stores and lists deployment decisions (one row per model and generation)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def record(self, records: Sequence[DeploymentRecord]) -> int:
        """Store ``records`` (one statement); how many were new. SinkError on failure."""
        if not records:
            return 0
        columns: list[list[Any]] = [[] for _ in range(13)]
        for r in records:
            d = r.deployment
            values = (
                d.model,
                r.generation,
                d.champion,
                d.challenger,
                d.strategy,
                d.challenger_share,
                r.actor,
                r.reason.replace("\x00", ""),
                orjson.dumps(r.evidence).decode(),
                "{" + ",".join(repr(s) for s in r.steps) + "}",
                r.step,
                r.decided_at,
                r.challenger_since,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        async with self._database.connection() as conn:
            status: str = await conn.execute(_INSERT, *columns)
        return int(status.rsplit(" ", 1)[-1])

    async def history(self, model: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest decisions first (all models, or one), as plain JSON types."""
        async with self._database.connection() as conn:
            rows = await conn.fetch(
                "SELECT model, generation, champion, challenger, strategy, share, actor, "
                "reason, evidence::text AS evidence, steps, step, decided_at, challenger_since "
                "FROM deployment_history WHERE $1::text IS NULL OR model = $1 "
                "ORDER BY decided_at DESC, generation DESC LIMIT $2",
                model,
                limit,
            )
        return [
            {
                "model": row["model"],
                "generation": row["generation"],
                "champion": row["champion"],
                "challenger": row["challenger"],
                "strategy": row["strategy"],
                "share": row["share"],
                "actor": row["actor"],
                "reason": row["reason"],
                "evidence": orjson.loads(row["evidence"]),
                "steps": list(row["steps"]),
                "step": row["step"],
                "decided_at": _epoch(row["decided_at"]),
                "challenger_since": (
                    None if row["challenger_since"] is None else _epoch(row["challenger_since"])
                ),
            }
            for row in rows
        ]


def _epoch(value: dt.datetime) -> float:
    return value.timestamp()
