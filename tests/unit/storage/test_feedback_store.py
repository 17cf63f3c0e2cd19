"""FeedbackStore's retry policy, with a fake sink connection (the SQL runs in the integration
tests on the real PostgreSQL: tests/integration/test_feedback.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import pytest

from phoenix_stream.exceptions import SinkError
from phoenix_stream.lifecycle.feedback import ParsedFeedback
from phoenix_stream.storage.feedback import FeedbackStore


class FakeConnection:
    """Answers fetch() with the next scripted outcome: rows, or an exception to raise."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls = 0
        self.terminated = 0

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        self.calls += 1
        outcome = self.script.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        rows: list[dict[str, Any]] = outcome(*args)
        return rows

    def terminate(self) -> None:
        self.terminated += 1

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()  # type: ignore[return-value]

    async def execute(self, query: str, *args: Any) -> str:
        return "SELECT 1"  # the advisory lock: nothing to script


class FakeDatabase:
    """Hands out the one fake connection, wrapping driver errors as Database.connection does."""

    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[FakeConnection]:
        try:
            yield self.conn
        except (OSError, asyncpg.PostgresError) as exc:
            raise SinkError(f"PostgreSQL failed: {exc!r}") from exc


def all_new(request_ids: list[str], labels: list[int], times: list[float], *_: Any) -> list[Any]:
    return [
        {
            "request_id": r,
            "inserted": True,
            "orphan": False,
            "stored_label": None,
            "overflow": False,
        }
        for r in request_ids
    ]


ITEMS = [ParsedFeedback("a", 1, 1_700_000_000.0), ParsedFeedback("b", 0, 1_700_000_000.0)]


def make_store(script: list[Any], stopping: list[bool] | None = None) -> FeedbackStore:
    flags = stopping if stopping is not None else [False]
    return FeedbackStore(
        FakeDatabase(FakeConnection(script)),  # type: ignore[arg-type]
        min_backoff_s=0.001,
        max_backoff_s=0.002,
        is_stopping=lambda: flags[0],
    )


async def test_outages_are_retried_until_the_write_succeeds() -> None:
    refused = ConnectionRefusedError("down")
    store = make_store([refused, asyncpg.exceptions.AdminShutdownError("bye"), all_new])
    report = await store.write_until_done(ITEMS)
    assert (report.written, report.duplicates) == (2, 0)
    assert store.retries == 2
    fake = store._database.conn  # type: ignore[attr-defined]
    assert fake.calls == 3 and fake.terminated == 2  # a broken connection is never reused


async def test_a_refusal_is_not_retried() -> None:
    store = make_store([asyncpg.exceptions.UndefinedTableError("no feedback table"), all_new])
    with pytest.raises(SinkError, match="writing 2 feedback labels failed") as caught:
        await store.write_until_done(ITEMS)
    assert isinstance(caught.value.__cause__, asyncpg.exceptions.UndefinedTableError)
    assert store.retries == 0


async def test_a_stopping_worker_still_writes_the_batch_it_holds() -> None:
    # The stop used to refuse the write outright: the labels waited for the next owner,
    # and the agent crashed mid-stop (Faust restarted it, and the stop hung).
    store = make_store([all_new], [True])
    report = await store.write_until_done(ITEMS)
    assert report.written == 2


async def test_stopping_gives_up_after_an_outage_with_the_events_unacked() -> None:
    store = make_store([ConnectionRefusedError("down"), all_new], [True])
    with pytest.raises(SinkError, match="stopping; 2 feedback labels were not written"):
        await store.write_until_done(ITEMS)
    assert store._database.conn.calls == 1  # type: ignore[attr-defined]  # no retry
