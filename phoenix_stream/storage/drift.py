"""Drift reports in PostgreSQL (table ``drift_reports``, ``sql/0005_drift_reports.sql``).

One row per (model, version, window_start): a batch goes in with one ``INSERT ... SELECT
FROM unnest(...) ON CONFLICT DO NOTHING``, so a report written twice (a redelivered record,
a retry after a lost acknowledgement, a second worker) is stored once, and
:meth:`DriftStore.record` says which reports were new, for counters that must not count
a window twice. Read newest first by ``GET /v1/drift/{model}``. The store shares the
worker's asyncpg pool (``Database.connection``), which applies the migrations.

Columns hold ``DriftReport.as_dict()``'s fields; reports read back go through
``parse_report`` like those off the topic, so ``record`` refuses a report that would not
(a NaN p-value, a name PostgreSQL cannot store). Features come back in jsonb's key order,
not the report's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from phoenix_stream.drift.report import DriftReport, parse_report
from phoenix_stream.exceptions import SinkError, ValidationError
from phoenix_stream.storage.database import Database

__all__ = [
    "INSERT_COLUMNS",
    "DriftStore",
    "StoredDriftReport",
    "check_reports",
    "insert_columns",
    "stored_report",
]

INSERT_COLUMNS = (
    "model",
    "version",
    "window_start",
    "window_end",
    "n",
    "verdict",
    "alarm",
    "consecutive",
    "trigger_id",
    "features",
    "rule",
)
"""The stored fields, named as in ``DriftReport.as_dict()``, in the insert's order."""
_JSON_COLUMNS = frozenset({"features", "rule"})

# The ordinality numbers the incoming reports, so that the rows actually inserted (which
# RETURNING gives back without the source's position) can be matched to them. Times
# travel as epoch seconds (float8) and become timestamptz in PostgreSQL.
_INSERT = """
WITH incoming AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::bigint[],
                         $6::text[], $7::bool[], $8::int[], $9::text[], $10::jsonb[],
                         $11::jsonb[])
        WITH ORDINALITY AS r(model, version, window_start, window_end, n, verdict, alarm,
                             consecutive, trigger_id, features, rule, position)
),
inserted AS (
    INSERT INTO drift_reports (model, version, window_start, window_end, n, verdict, alarm,
                               consecutive, trigger_id, features, rule)
    SELECT model, version, to_timestamp(window_start), to_timestamp(window_end), n, verdict,
           alarm, consecutive, trigger_id, features, rule
    FROM incoming
    ON CONFLICT (model, version, window_start) DO NOTHING
    RETURNING model, version, window_start
)
SELECT i.position FROM incoming i
JOIN inserted n ON n.model = i.model AND n.version = i.version
    AND n.window_start = to_timestamp(i.window_start)
ORDER BY i.position
"""

# Ordered by the stored timestamptz (qualified: the bare name is the float output column),
# which the (model, window_start DESC) index gives without a sort.
_RECENT = """
SELECT model, version,
       extract(epoch FROM window_start)::float8 AS window_start,
       extract(epoch FROM window_end)::float8 AS window_end,
       n, verdict, alarm, consecutive, trigger_id, features::text AS features,
       rule::text AS rule, extract(epoch FROM recorded_at)::float8 AS recorded_at
FROM drift_reports
WHERE model = $1
ORDER BY drift_reports.window_start DESC, drift_reports.version DESC
LIMIT $2
"""


@dataclass(frozen=True, slots=True)
class StoredDriftReport:
    """A drift report as read back, with when it was stored (epoch seconds)."""

    report: DriftReport
    recorded_at: float

    def as_dict(self) -> dict[str, Any]:
        """The report's plain JSON form plus ``recorded_at``."""
        return {**self.report.as_dict(), "recorded_at": self.recorded_at}


def insert_columns(reports: Sequence[DriftReport]) -> list[list[Any]]:
    """Column arrays for the batch insert, in :data:`INSERT_COLUMNS` order.

    Values are the report's ``as_dict()`` (its storage shape): times in epoch seconds,
    ``features`` and ``rule`` as JSON text.
    """
    columns: list[list[Any]] = [[] for _ in INSERT_COLUMNS]
    for report in reports:
        data = report.as_dict()
        for column, name in zip(columns, INSERT_COLUMNS, strict=True):
            value = data[name]
            column.append(orjson.dumps(value).decode() if name in _JSON_COLUMNS else value)
    return columns


def stored_report(row: Mapping[str, Any]) -> StoredDriftReport:
    """A report from one row of the ``recent`` query (JSON as text, times as epoch s).

    Checked by ``parse_report`` like a report off the topic; SinkError for a row that
    fails (written around this store: :meth:`DriftStore.record` refuses such reports).
    """
    data = {
        name: orjson.loads(row[name]) if name in _JSON_COLUMNS else row[name]
        for name in INSERT_COLUMNS
    }
    try:
        report = parse_report(data)
    except ValidationError as exc:
        key = f"({row['model']!r}, {row['version']!r}, {row['window_start']})"
        raise SinkError(f"stored drift report {key} is invalid: {exc}") from exc
    return StoredDriftReport(report, float(row["recorded_at"]))


def check_reports(reports: Sequence[DriftReport]) -> None:
    """ValidationError (field ``reports[i].<field>``) for a report that could not be read back.

    The rules are ``parse_report``'s: names, finite numbers in range, times PostgreSQL
    can hold, the rule's keys.
    """
    for index, report in enumerate(reports):
        try:
            parse_report(report.as_dict())
        except ValidationError as exc:
            raise ValidationError(f"reports[{index}].{exc.field}", exc.message) from exc


class DriftStore:
    """Stores drift reports once per (model, version, window) and lists the newest."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def record(self, reports: Sequence[DriftReport]) -> list[DriftReport]:
        """Store ``reports`` in one statement; the ones that were new, in input order.

        A report whose (model, version, window_start) is stored already, or came earlier in
        the batch, is skipped. ValidationError (nothing written) for a report that breaks
        ``parse_report``'s rules; SinkError on failure (cause kept, for ``is_transient``).
        """
        check_reports(reports)
        unique: dict[tuple[str, str, float], DriftReport] = {}
        for report in reports:
            # PostgreSQL keeps microseconds: starts closer than that are one window.
            key = (report.model, report.version, round(report.window_start, 6))
            unique.setdefault(key, report)
        if not unique:
            return []
        batch = list(unique.values())
        async with self._database.connection() as conn:
            rows = await conn.fetch(_INSERT, *insert_columns(batch))
        return [batch[int(row["position"]) - 1] for row in rows]

    async def recent(self, model: str, limit: int = 20) -> list[StoredDriftReport]:
        """The ``limit`` latest windows of ``model`` (all versions), newest first."""
        async with self._database.connection() as conn:
            rows = await conn.fetch(_RECENT, model, int(limit))
        return [stored_report(row) for row in rows]
