"""The worker's PostgreSQL database: one asyncpg pool, its migrations, readiness and retry.

:class:`Database` opens the pool and applies the migrations (``storage/sql/``) before any
store uses it; when PostgreSQL is down at start it keeps opening in the background with
backoff (:mod:`phoenix_stream.retrying`), and every store's call fails with ``SinkError``
until it is reachable. The stores (the prediction sink, feedback, deployment history,
drift reports, training data) borrow connections with :meth:`Database.connection`, which
turns driver errors into ``SinkError`` with the cause kept; :func:`is_transient` tells an
outage (retry) from a refusal, and :func:`is_data_error` a refusal that blames the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
from mode import Service

from phoenix_stream.exceptions import SinkError
from phoenix_stream.redaction import redact
from phoenix_stream.retrying import Backoff, retry_outages
from phoenix_stream.storage.migrations import apply_migrations

__all__ = [
    "DRIVER_ERRORS",
    "Database",
    "discard_if_broken",
    "fetch",
    "is_data_error",
    "is_transient",
]

log = logging.getLogger(__name__)

# Everything the driver raises: server errors, client-side errors, socket errors.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
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


class Database(Service):
    """The pool of one worker (or test); backoff bounds in seconds.

    Starts even when PostgreSQL is down: it keeps opening in the background, and
    :meth:`connection` fails with SinkError until it is reachable. ``connection_setup``
    statements run on every new connection (the sink's staging table).
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
        connection_setup: Sequence[str] = (),
        application_name: str = "phoenix-stream",
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
        self.connection_setup = tuple(connection_setup)
        self.application_name = application_name
        self._pool: Any = None
        self._open_lock = asyncio.Lock()
        self._rng = random.Random()  # jitter only, not security
        super().__init__(**kwargs)

    @property
    def ready(self) -> bool:
        """True once the pool is open and migrations are applied."""
        return self._pool is not None

    def backoff(self) -> Backoff:
        """A new backoff schedule with this database's bounds (one per retried operation)."""
        return Backoff(self.min_backoff_s, self.max_backoff_s, self._rng)

    async def on_start(self) -> None:
        """Open the pool and apply migrations; if PostgreSQL is down, retry in the background."""
        try:
            await self.pool()
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
        except DRIVER_ERRORS as exc:  # TimeoutError included
            log.warning("Closing the PostgreSQL pool failed (%r); terminating it", exc)
            pool.terminate()

    async def _setup_connection(self, conn: Any) -> None:
        # Per connection, also after a reconnect; the pool's reset on release keeps temp tables.
        for statement in self.connection_setup:
            await conn.execute(statement)

    async def pool(self) -> Any:
        """The pool, opened with migrations applied first if needed; SinkError if it cannot."""
        async with self._open_lock:
            if self._pool is not None:
                return self._pool
            pool = None
            try:
                pool = await asyncpg.create_pool(
                    self.dsn,
                    # No floor: asyncpg would keep reconnecting it in the background during
                    # an outage (logging each try) and can race pool.close(); the stores
                    # reconnect on demand anyway.
                    min_size=0,
                    max_size=self.pool_size,
                    timeout=self.connect_timeout_s,
                    command_timeout=self.command_timeout_s,
                    init=self._setup_connection,
                    server_settings={
                        "application_name": self.application_name,
                        **self.server_settings,
                    },
                )
                async with pool.acquire(timeout=self.command_timeout_s) as conn:
                    applied = await apply_migrations(conn)
            except DRIVER_ERRORS as exc:
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

    async def _open_until_ready(self) -> None:
        backoff = self.backoff()

        async def open_unless_stopping() -> None:
            if not self.should_stop:
                await self.pool()

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

    async def pause(self, delay: float, stop_event: asyncio.Event | None = None) -> None:
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
        """A pooled asyncpg connection of the migrated database.

        Driver errors raised inside the block come out as SinkError (cause kept); use
        ``is_transient(exc.__cause__)`` to tell an outage from a refusal.
        """
        pool = await self.pool()
        try:
            async with pool.acquire(timeout=self.command_timeout_s) as conn:
                yield conn
        except DRIVER_ERRORS as exc:
            raise SinkError(f"PostgreSQL failed: {redact(repr(exc))}") from exc

    async def ping(self) -> bool:
        """True if PostgreSQL answers ``SELECT 1`` within the connect timeout; never raises."""
        pool = self._pool
        if pool is None:
            return False
        try:
            async with pool.acquire(timeout=self.connect_timeout_s) as conn:
                return bool(await conn.fetchval("SELECT 1", timeout=self.connect_timeout_s) == 1)
        except DRIVER_ERRORS as exc:
            log.debug("PostgreSQL ping failed: %r", exc)
            return False


async def fetch(
    database: Database, query: str, *args: Any, what: str, lock: int | None = None
) -> list[Any]:
    """Rows of one statement on a pooled connection; SinkError naming ``what`` on failure.

    With ``lock``, the statement runs in a transaction holding that advisory lock.
    The SinkError's cause is the driver's error, for ``is_transient``.
    """
    try:
        async with database.connection() as conn:
            try:
                if lock is None:
                    rows: list[Any] = await conn.fetch(query, *args)
                else:
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
                        rows = await conn.fetch(query, *args)
            except BaseException as exc:
                discard_if_broken(conn, exc)
                raise
    except SinkError as exc:
        raise SinkError(f"{what} failed: {exc}") from (exc.__cause__ or exc)
    return rows


def discard_if_broken(conn: Any, exc: BaseException) -> None:
    """Terminate ``conn`` unless ``exc`` blames the data: a statement cut short (server
    killed, cancelled) can leave asyncpg's protocol state confused on an open connection."""
    if not is_data_error(exc):
        conn.terminate()
