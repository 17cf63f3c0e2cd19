"""The PostgreSQL prediction sink: batched, idempotent writes that survive outages.

A batch is COPYed (binary) into a per-connection temporary staging table and moved with one
``INSERT ... SELECT ... ON CONFLICT (request_id) DO NOTHING`` in the same transaction, so a
batch lands whole or not at all and a batch written twice (a retry after a lost commit
acknowledgement, a redelivered Kafka record) adds nothing. ``scripts/bench_sink_write.py``
measured it against executemany and a single unnest() INSERT with 500-row batches: over
five runs a median 1.17x executemany's rows/s for new rows and 1.16x for re-sent ones,
against 1.09x and 1.11x for unnest(), differences within this shared machine's noise;
executemany also cannot say how many rows were new. Rows are checked first by
:mod:`phoenix_stream.storage.rows`.
``write_until_done`` retries connection failures with exponential backoff and jitter
(:mod:`phoenix_stream.retrying`) until the batch is in, which is what lets the caller commit
Kafka offsets only after a successful write (docs/architecture.md sections 4 and 7).
``write_isolating`` also survives rows PostgreSQL refuses: it splits a refused batch in
halves until each refused row stands alone, writes the rest and reports those rows with
PostgreSQL's reason (docs/architecture.md section 7), instead of failing the batch.
Rows go to ``predictions`` or, for challengers served in shadow, ``shadow_predictions``.
The pool, its migrations and readiness are :class:`~phoenix_stream.storage.database.Database`'s:
the sink creates and starts the worker's one database (``sink.database``), which the other
stores borrow.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import asyncpg  # type: ignore[import-untyped,unused-ignore]
from mode import Service

from phoenix_stream import metrics
from phoenix_stream.exceptions import SinkError, ValidationError
from phoenix_stream.redaction import redact
from phoenix_stream.retrying import logged_retry, retry_outages
from phoenix_stream.storage.database import DRIVER_ERRORS, Database, is_data_error, is_transient
from phoenix_stream.storage.rows import COLUMNS, prediction_records

__all__ = [
    "COLUMNS",
    "TABLES",
    "PredictionSink",
    "RowsRefused",
    "SinkReport",
    "Table",
    "isolate_rejected",
    "prediction_records",
]

log = logging.getLogger(__name__)

_STAGING = "phoenix_predictions_staging"
# Times arrive as epoch seconds; the staging table keeps them as float8 and the INSERT
# converts with to_timestamp(), cheaper than building datetime objects in Python.
_CREATE_STAGING = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} (
    request_id text, entity_id text, model text, version text, variant text,
    score double precision, label integer, features jsonb, defaults_used text[],
    degraded boolean, source text, received_at double precision,
    predicted_at double precision, latency_ms double precision
) ON COMMIT DELETE ROWS
"""

Table = Literal["predictions", "shadow_predictions"]
TABLES: tuple[Table, ...] = ("predictions", "shadow_predictions")
"""Tables the sink writes: served predictions, and challenger answers served in shadow."""


def _insert_from_staging(table: Table) -> str:
    # Table names come from the fixed TABLES allow-list only, never from input.
    return f"""
INSERT INTO {table} (
    request_id, entity_id, model, version, variant, score, label, features, defaults_used,
    degraded, source, received_at, predicted_at, latency_ms
)
SELECT request_id, entity_id, model, version, variant, score, label, features, defaults_used,
       degraded, source, to_timestamp(received_at), to_timestamp(predicted_at), latency_ms
FROM {_STAGING}
ON CONFLICT (request_id) DO NOTHING
"""  # noqa: S608 - see above


_INSERT_FROM_STAGING: dict[str, str] = {table: _insert_from_staging(table) for table in TABLES}
_COUNT: dict[str, str] = {table: f"SELECT count(*) FROM {table}" for table in TABLES}  # noqa: S608
_COUNT_MODEL: dict[str, str] = {
    table: f"SELECT count(*) FROM {table} WHERE model = $1"  # noqa: S608
    for table in TABLES
}


class RowsRefused(SinkError):
    """PostgreSQL, or the driver encoding for it, refused the rows of a write; cause kept."""


@dataclass(frozen=True, slots=True)
class SinkReport:
    """Outcome of one batch write, all in rows.

    ``written``: stored now; ``duplicates``: accepted but already stored (same request_id,
    also twice in one batch); ``rejected``: ``(index in the batch, reason naming the field,
    field or None)``, in index order, for rows refused by the checks or by PostgreSQL.
    """

    written: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str, str | None]] = field(default_factory=list)


T = TypeVar("T")


async def isolate_rejected(
    items: Sequence[T], write: Callable[[Sequence[T]], Awaitable[int]]
) -> tuple[int, list[tuple[int, RowsRefused]]]:
    """Write ``items`` through ``write`` (which returns rows new), setting aside refused ones.

    A slice that ``write`` refuses (RowsRefused) is split in halves until each refused item
    stands alone: k bad items out of n cost at most 1 + 2k*ceil(log2(n)) writes. Returns (rows
    new, [(index, error)] in index order). Other errors propagate; slices written before
    stay written, so ``write`` must be idempotent for the caller to retry the batch.
    """
    written = 0
    refused: list[tuple[int, RowsRefused]] = []

    async def attempt(start: int, stop: int) -> None:
        nonlocal written
        try:
            written += await write(items[start:stop])
        except RowsRefused as exc:
            if stop - start == 1:
                refused.append((start, exc))
                return
            # Both halves are tried: a slice refused as a whole may go in as two halves
            # (nothing then refused), and a half may hold several bad rows.
            middle = (start + stop) // 2
            await attempt(start, middle)
            await attempt(middle, stop)

    if items:
        await attempt(0, len(items))
    return written, refused


_MAX_REASON_CHARS = 500


def _refusal(exc: RowsRefused) -> tuple[str, str | None]:
    """The reason (PostgreSQL's message, on one line, bounded) and column for a refused row."""
    cause = exc.__cause__
    if isinstance(cause, asyncpg.PostgresError):
        reason = f"PostgreSQL refused the row ({cause.sqlstate} {type(cause).__name__}): {cause}"
        column = getattr(cause, "column_name", None)
    else:
        reason = f"the driver cannot encode the row ({type(cause).__name__}): {cause}"
        column = None
    reason = " ".join(reason.split())
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 3] + "..."
    return reason, column if isinstance(column, str) else None


class PredictionSink(Service):
    """Writes prediction rows to PostgreSQL; backoff bounds in seconds.

    Starts even when PostgreSQL is down: it keeps connecting in the background, and writes
    fail with SinkError (or wait, in ``write_until_done``) until it is reachable.
    """

    def __init__(
        self,
        dsn: str,
        min_backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        *,
        pool_size: int = 2,
        connect_timeout_s: float = 2.0,
        command_timeout_s: float = 15.0,
        server_settings: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        # The worker's one database: started with the sink, borrowed by the other stores.
        self.database = Database(
            dsn,
            min_backoff_s,
            max_backoff_s,
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            command_timeout_s=command_timeout_s,
            server_settings=server_settings,
            connection_setup=(_CREATE_STAGING,),
            application_name="phoenix-sink",
        )
        self.command_timeout_s = command_timeout_s
        self.retries = 0
        super().__init__(**kwargs)

    def on_init_dependencies(self) -> list[Service]:
        return [self.database]

    @property
    def ready(self) -> bool:
        """True once the database's pool is open and migrations are applied."""
        return self.database.ready

    async def ping(self) -> bool:
        """True if PostgreSQL answers (``Database.ping``); never raises."""
        return await self.database.ping()

    def _count_retry(self) -> None:
        self.retries += 1
        metrics.SINK_RETRIES.inc()  # now, not after the write: an outage shows while it lasts

    async def write(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        rejects: list[tuple[int, ValidationError]] | None = None,
        table: str = "predictions",
    ) -> int:
        """Write a batch of prediction rows in one transaction; return how many were new.

        Rows already stored (same request_id) are skipped. A bad row raises ValidationError
        (naming the row and field) before any I/O, or with ``rejects`` given is left out and
        reported there (see :func:`prediction_records`). ``table``: one of TABLES. SinkError
        if PostgreSQL fails (RowsRefused if it refuses the rows).
        """
        return await self._write_records(prediction_records(rows, rejects), _checked(table))

    async def _write_records(self, records: Sequence[tuple[Any, ...]], table: Table) -> int:
        if not records:
            return 0
        pool = await self.database.pool()
        try:
            async with pool.acquire(timeout=self.command_timeout_s) as conn:
                try:
                    async with conn.transaction():
                        await conn.copy_records_to_table(_STAGING, records=records, columns=COLUMNS)
                        status: str = await conn.execute(_INSERT_FROM_STAGING[table])
                except BaseException as exc:
                    if is_data_error(exc):
                        # The transaction rolled back and the connection is sound (also
                        # after a COPY the driver aborted while encoding): keep it, as the
                        # split of a refused batch writes again at once.
                        raise RowsRefused(
                            f"PostgreSQL refused {len(records)} predictions: {exc!r}"
                        ) from exc
                    # A write cut short (server killed mid-COPY) can leave asyncpg's protocol
                    # state confused on a connection that still looks open; never reuse it.
                    conn.terminate()
                    raise
        except DRIVER_ERRORS as exc:
            raise SinkError(
                f"writing {len(records)} predictions failed: {redact(repr(exc))}"
            ) from exc
        return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <rows>"

    async def write_until_done(
        self,
        rows: Sequence[Mapping[str, Any]],
        stop_event: asyncio.Event | None = None,
        *,
        rejects: list[tuple[int, ValidationError]] | None = None,
        table: str = "predictions",
    ) -> int:
        """Write like :meth:`write`, retrying transient failures with backoff until it succeeds.

        Returns the rows newly inserted by the successful attempt (an earlier attempt whose
        acknowledgement was lost may have stored some already: they are skipped, not doubled).
        Raises SinkError at once for a non-transient failure (RowsRefused when PostgreSQL
        refuses a row: see :meth:`write_isolating`), and when the service stops or
        ``stop_event`` is set before the batch is written.
        """
        records = prediction_records(rows, rejects)  # once: retries reuse the conversion
        return await self._write_records_until_done(records, _checked(table), stop_event)

    async def write_isolating(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        table: str = "predictions",
        stop_event: asyncio.Event | None = None,
    ) -> SinkReport:
        """Write rows, retrying outages until done, and set aside the rows that are refused.

        ``table`` is one of TABLES (ValueError otherwise). Rows failing
        :func:`prediction_records` and rows PostgreSQL refuses (isolated by
        :func:`isolate_rejected`) are reported in ``rejected``, indexed into ``rows``; the
        others are stored once. SinkError when stopping (see :meth:`write_until_done`) or on
        a non-transient failure not caused by rows (a missing table, a refused login).
        """
        target = _checked(table)
        checks: list[tuple[int, ValidationError]] = []
        records = prediction_records(rows, checks)
        report = await self.write_records_isolating(records, table=target, stop_event=stop_event)
        failed = {index for index, _ in checks}
        kept = [index for index in range(len(rows)) if index not in failed]  # record -> row
        rejected = [(kept[i], reason, column) for i, reason, column in report.rejected]
        for index, error in checks:
            key = error.field.split(".", 1)[-1]  # "rows[3].score" -> "score"
            rejected.append((index, f"{key}: {error.message}", key))
        rejected.sort(key=lambda entry: entry[0])
        return SinkReport(report.written, report.duplicates, rejected)

    async def write_records_isolating(
        self,
        records: Sequence[tuple[Any, ...]],
        *,
        table: str = "predictions",
        stop_event: asyncio.Event | None = None,
    ) -> SinkReport:
        """:meth:`write_isolating` for records already converted by prediction_records.

        No checks here: PostgreSQL and the driver are the judges. ``rejected`` is indexed into
        ``records`` and carries PostgreSQL's (or the driver's) message.
        """
        target = _checked(table)
        written, refused = await isolate_rejected(
            records, lambda chunk: self._write_records_until_done(chunk, target, stop_event)
        )
        rejected = [(index, *_refusal(error)) for index, error in refused]
        if rejected:
            log.warning(
                "PostgreSQL refused %d of %d predictions for %s; set aside",
                len(rejected),
                len(records),
                target,
            )
        return SinkReport(written, len(records) - written - len(rejected), rejected)

    async def _write_records_until_done(
        self,
        records: Sequence[tuple[Any, ...]],
        table: Table,
        stop_event: asyncio.Event | None,
    ) -> int:

        async def write_unless_stopping() -> int:
            if self.should_stop or (stop_event is not None and stop_event.is_set()):
                raise SinkError(f"sink is stopping; {len(records)} predictions were not written")
            return await self._write_records(records, table)

        return await retry_outages(
            write_unless_stopping,
            is_outage=lambda exc: isinstance(exc, SinkError) and is_transient(exc.__cause__),
            backoff=self.database.backoff(),
            on_retry=logged_retry(
                log, f"Writing {len(records)} predictions failed", self._count_retry
            ),
            pause=lambda delay: self.database.pause(delay, stop_event),
        )

    async def count_predictions(
        self, model: str | None = None, *, table: str = "predictions"
    ) -> int:
        """Number of stored rows in ``table``, of one ``model`` or all (for tests and the demo)."""
        target = _checked(table)
        pool = await self.database.pool()
        try:
            async with pool.acquire(timeout=self.command_timeout_s) as conn:
                if model is None:
                    return int(await conn.fetchval(_COUNT[target]))
                return int(await conn.fetchval(_COUNT_MODEL[target], model))
        except DRIVER_ERRORS as exc:
            raise SinkError(f"counting {target} failed: {redact(repr(exc))}") from exc


def _checked(table: str) -> Table:
    """``table`` if it is one of TABLES, else ValueError: SQL never takes other names."""
    for known in TABLES:
        if table == known:
            return known
    raise ValueError(f"table must be one of {TABLES}, got {table!r}")
