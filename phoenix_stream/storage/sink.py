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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import asyncpg  # type: ignore[import-untyped,unused-ignore]
from mode import Service

from phoenix_stream.exceptions import SinkError, ValidationError
from phoenix_stream.redaction import redact
from phoenix_stream.retrying import Backoff, logged_retry, retry_outages
from phoenix_stream.storage.migrations import apply_migrations
from phoenix_stream.storage.rows import COLUMNS, prediction_records

__all__ = [
    "COLUMNS",
    "TABLES",
    "PredictionSink",
    "RowsRefused",
    "SinkReport",
    "Table",
    "is_data_error",
    "is_transient",
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
# Everything the driver raises: server errors, client-side errors, socket errors.
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; TimeoutError is an OSError too
    asyncpg.PostgresError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)
# Server errors after which the same write can succeed later: the server is gone,
# restarting, shutting down or overloaded, or the connection broke.
_TRANSIENT_SERVER: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError
    asyncpg.exceptions.OperatorInterventionError,  # 57: admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # 40: serialization failure, deadlock
)
# Client errors that a retry cannot fix: bad data or configuration, missing features.
_PERMANENT_CLIENT: tuple[type[BaseException], ...] = (
    ValueError,  # asyncpg's client-side DataError and ClientConfigurationError
    asyncpg.exceptions.UnsupportedClientFeatureError,
    asyncpg.exceptions.UnsupportedServerFeatureError,
)


# Errors that blame the rows, not the server or the connection: the same rows fail the
# same way again, and the batch without the offending row goes in.
_DATA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,  # class 22: out of range, bad time, NUL, bad text representation
    asyncpg.IntegrityConstraintViolationError,  # class 23: CHECK, NOT NULL
    asyncpg.ProgramLimitExceededError,  # class 54: an index entry too large
    # Raised by the driver while encoding a record for COPY (a label beyond int4, a lone
    # surrogate, a wrong type); the connection stays usable, as for the server errors.
    TypeError,
    ValueError,  # includes UnicodeEncodeError and asyncpg's client-side DataError
    OverflowError,
)


def is_data_error(exc: BaseException | None) -> bool:
    """True if ``exc``, raised while writing rows, means PostgreSQL or the driver refuses them."""
    return isinstance(exc, _DATA_ERRORS)


def is_transient(exc: BaseException | None) -> bool:
    """True if ``exc`` (usually a SinkError's cause) means a retry may succeed."""
    if isinstance(exc, (OSError, *_TRANSIENT_SERVER)):
        return True
    # When the server vanishes mid-operation asyncpg also raises client-side errors:
    # InterfaceError "the underlying connection is closed" from a transaction block, and
    # InternalClientError "cannot switch to state ..." after a COPY cut short. The write
    # discards that connection, so a retry starts on a fresh one.
    client_errors = (asyncpg.exceptions.InterfaceError, asyncpg.exceptions.InternalClientError)
    return isinstance(exc, client_errors) and not isinstance(exc, _PERMANENT_CLIENT)


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


async def _init_connection(conn: Any) -> None:
    # Per connection, also after a reconnect; the pool's reset on release keeps temp tables.
    await conn.execute(_CREATE_STAGING)


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
        Backoff(min_backoff_s, max_backoff_s)  # refuses bounds that cannot make a schedule
        self.dsn = dsn
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.pool_size = pool_size
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        # e.g. {"search_path": "..."} to confine a test or benchmark to its own schema
        self.server_settings = dict(server_settings or {})
        self.retries = 0
        self._pool: Any = None
        self._open_lock = asyncio.Lock()
        self._rng = random.Random()  # jitter only, not security
        super().__init__(**kwargs)

    @property
    def ready(self) -> bool:
        """True once the pool is open and migrations are applied."""
        return self._pool is not None

    async def on_start(self) -> None:
        """Open the pool and apply migrations; if PostgreSQL is down, retry in the background."""
        try:
            await self._open()
        except SinkError as exc:
            log.warning("PostgreSQL not ready at start (%s); retrying in the background", exc)
            self.add_future(self._open_until_ready())

    async def on_stop(self) -> None:
        """Close the pool (waiting briefly for in-flight writes, then terminating)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=self.connect_timeout_s)
        except _DRIVER_ERRORS as exc:  # TimeoutError included
            log.warning("Closing the PostgreSQL pool failed (%r); terminating it", exc)
            pool.terminate()

    async def _open(self) -> Any:
        """Return the pool, opening it and applying migrations first if needed."""
        async with self._open_lock:
            if self._pool is not None:
                return self._pool
            pool = None
            try:
                pool = await asyncpg.create_pool(
                    self.dsn,
                    # No floor: asyncpg would keep reconnecting it in the background during
                    # an outage (logging each try) and can race pool.close(); the sink's
                    # writes reconnect on demand anyway.
                    min_size=0,
                    max_size=self.pool_size,
                    timeout=self.connect_timeout_s,
                    command_timeout=self.command_timeout_s,
                    init=_init_connection,
                    server_settings={"application_name": "phoenix-sink", **self.server_settings},
                )
                async with pool.acquire(timeout=self.command_timeout_s) as conn:
                    applied = await apply_migrations(conn)
            except _DRIVER_ERRORS as exc:
                if pool is not None:
                    pool.terminate()
                raise SinkError(redact(f"cannot open PostgreSQL at {self.dsn}: {exc!r}")) from exc
            except SinkError:
                if pool is not None:
                    pool.terminate()
                raise
            if applied:
                log.info("PostgreSQL schema migrated to %04d", applied[-1])
            self._pool = pool
            return pool

    def _count_retry(self) -> None:
        self.retries += 1

    def _backoff(self) -> Backoff:
        return Backoff(self.min_backoff_s, self.max_backoff_s, self._rng)

    async def _open_until_ready(self) -> None:
        backoff = self._backoff()

        async def open_unless_stopping() -> None:
            if not self.should_stop:
                await self._open()

        def report(exc: BaseException, failures: int, delay: float) -> None:
            log.warning("PostgreSQL still not ready (attempt %d): %s", failures, exc)

        # on_start has just failed once: wait before the first attempt here.
        await self.sleep(backoff.next_delay())
        await retry_outages(
            open_unless_stopping,
            is_outage=lambda exc: isinstance(exc, SinkError),
            backoff=backoff,
            on_retry=report,
            pause=self.sleep,
        )
        if self._pool is not None:
            log.info("PostgreSQL ready after %d background attempts", backoff.failures + 1)

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
        pool = await self._open()
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
        except _DRIVER_ERRORS as exc:
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
            backoff=self._backoff(),
            on_retry=logged_retry(
                log, f"Writing {len(records)} predictions failed", self._count_retry
            ),
            pause=lambda delay: self._pause(delay, stop_event),
        )

    async def _pause(self, delay: float, stop_event: asyncio.Event | None) -> None:
        """Sleep ``delay`` seconds, waking early when the service stops or ``stop_event`` is set."""
        if stop_event is None:
            await self.sleep(delay)
            return
        waiters = [
            asyncio.ensure_future(self.sleep(delay)),
            asyncio.ensure_future(stop_event.wait()),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled asyncpg connection of the migrated database, for the other stores.

        Driver errors raised inside the block come out as SinkError (cause kept); use
        ``is_transient(exc.__cause__)`` to tell an outage from a refusal.
        """
        pool = await self._open()
        try:
            async with pool.acquire(timeout=self.command_timeout_s) as conn:
                yield conn
        except _DRIVER_ERRORS as exc:
            raise SinkError(f"PostgreSQL failed: {redact(repr(exc))}") from exc

    async def ping(self) -> bool:
        """True if PostgreSQL answers ``SELECT 1`` within the connect timeout; never raises."""
        pool = self._pool
        if pool is None:
            return False
        try:
            async with pool.acquire(timeout=self.connect_timeout_s) as conn:
                return bool(await conn.fetchval("SELECT 1", timeout=self.connect_timeout_s) == 1)
        except _DRIVER_ERRORS as exc:
            log.debug("PostgreSQL ping failed: %r", exc)
            return False

    async def count_predictions(
        self, model: str | None = None, *, table: str = "predictions"
    ) -> int:
        """Number of stored rows in ``table``, of one ``model`` or all (for tests and the demo)."""
        target = _checked(table)
        pool = await self._open()
        try:
            async with pool.acquire(timeout=self.command_timeout_s) as conn:
                if model is None:
                    return int(await conn.fetchval(_COUNT[target]))
                return int(await conn.fetchval(_COUNT_MODEL[target], model))
        except _DRIVER_ERRORS as exc:
            raise SinkError(f"counting {target} failed: {redact(repr(exc))}") from exc


def _checked(table: str) -> Table:
    """``table`` if it is one of TABLES, else ValueError: SQL never takes other names."""
    for known in TABLES:
        if table == known:
            return known
    raise ValueError(f"table must be one of {TABLES}, got {table!r}")
