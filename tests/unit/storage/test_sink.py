"""Sink logic that needs no PostgreSQL: retry classification, backoff, construction.

Writes, idempotence and outages against the real server:
tests/integration/test_prediction_sink.py.
"""

from __future__ import annotations

import random

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import pytest

from phoenix_stream.exceptions import SinkError
from phoenix_stream.storage.sink import PredictionSink, _redact, backoff_delay, is_transient


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed mid-operation"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock"),
        asyncpg.exceptions.InterfaceError(
            "cannot call Transaction.__aexit__(): the underlying connection is closed"
        ),
        asyncpg.exceptions.InternalClientError("cannot switch to state 15"),
    ],
)
def test_transient_errors(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        None,
        asyncpg.exceptions.UndefinedTableError("no predictions table"),
        asyncpg.exceptions.DataError("bad value"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
        asyncpg.exceptions.ClientConfigurationError("bad option"),
        asyncpg.exceptions.UnsupportedServerFeatureError("no such feature"),
        SinkError("migration changed"),
        ValueError("x"),
    ],
)
def test_permanent_errors(exc: BaseException | None) -> None:
    assert not is_transient(exc)


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(5)
    for attempt, ceiling in [(0, 0.2), (1, 0.4), (2, 0.8), (4, 3.2), (5, 5.0), (500, 5.0)]:
        delays = [backoff_delay(attempt, 0.2, 5.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered, so workers hit together spread out


def test_sink_checks_backoff_bounds() -> None:
    with pytest.raises(ValueError, match="backoff"):
        PredictionSink("postgresql://x@127.0.0.1:1/db", min_backoff_s=0.0)
    with pytest.raises(ValueError, match="backoff"):
        PredictionSink("postgresql://x@127.0.0.1:1/db", min_backoff_s=2.0, max_backoff_s=1.0)


async def test_sink_before_start_is_not_ready_and_does_not_ping() -> None:
    sink = PredictionSink("postgresql://x@127.0.0.1:1/db")
    assert sink.ready is False
    assert await sink.ping() is False
    assert await sink.write([]) == 0  # nothing to write needs no connection


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/phoenix",
            "postgresql://postgres@127.0.0.1:5432/phoenix",
        ),
        ("postgresql://bob:pw@db:5432/phoenix", "postgresql://bob:***@db:5432/phoenix"),
        ("postgresql://bob:p@ss@db/phoenix", "postgresql://bob:***@db/phoenix"),
        ("host=db user=bob password=pw dbname=x", "host=db user=bob password=*** dbname=x"),
    ],
)
def test_dsn_password_is_never_shown(dsn: str, shown: str) -> None:
    assert _redact(dsn) == shown
