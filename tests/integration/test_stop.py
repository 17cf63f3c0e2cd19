"""A worker stopped (SIGTERM) while feedback flows exits in bounded time and loses no label.

HTTP 202 on ``/v1/feedback`` (with a feedback token, for stored predictions) means the
labels are stored in PostgreSQL: each one must be there after the stop, and nothing
answered otherwise may be. A label left unwritten on a topic would be read again by the
next worker of the group (left uncommitted), which the test starts if one is missing.
Labels keep being posted while the signal arrives, so the stop meets requests in flight.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from typing import Any

import aiohttp
import asyncpg

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.tools.worker_process import WorkerProcess

LABELS_PER_POST = 50
POSTS_BEFORE_STOP = 20
MAX_POSTS = 400  # bounds the posting loop if the worker never stops answering
# The stop must end within this (PHOENIX_STOP_TIMEOUT_S is set below it), seconds.
STOP_BOUND_S = 30.0
STOP_TIMEOUT_S = 20.0
# Generous: the machine is shared; the wait returns as soon as every label is stored.
STORED_TIMEOUT_S = 120.0
FEEDBACK_TOKEN = "stop-test-feedback-token"


async def _predictions(dsn: str, run: str) -> None:
    """Stored predictions for every id the test may label (labels attach only to those)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "predictions",
            records=[
                (f"{run}-{n}-{i}", "credit-risk")
                for n in range(MAX_POSTS)
                for i in range(LABELS_PER_POST)
            ],
            columns=["request_id", "model"],
        )
    finally:
        await conn.close()


async def _post_until_refused(
    worker: WorkerProcess, run: str, accepted: list[str], posted: asyncio.Event
) -> None:
    """Post labels until the worker stops answering; ``accepted``: ids answered 202."""
    async with aiohttp.ClientSession() as session:
        for n in range(MAX_POSTS):
            items = [
                {"request_id": f"{run}-{n}-{i}", "label": i % 2} for i in range(LABELS_PER_POST)
            ]
            try:
                async with session.post(
                    f"{worker.base_url}/v1/feedback",
                    json=items,
                    headers={"Authorization": f"Bearer {FEEDBACK_TOKEN}"},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    if response.status != 202:
                        return  # 503 while stopping: not accepted, not counted
                    body = await response.json()
            except (aiohttp.ClientError, TimeoutError):
                return
            assert body["accepted"] == LABELS_PER_POST, body
            accepted.extend(item["request_id"] for item in items)
            if n + 1 >= POSTS_BEFORE_STOP:
                posted.set()


async def _stored(dsn: str, run: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT request_id FROM feedback WHERE request_id LIKE $1", f"{run}-%"
        )
    finally:
        await conn.close()
    return {row["request_id"] for row in rows}


async def test_sigterm_while_feedback_flows_exits_in_time_and_keeps_every_label(
    worker_factory: Any, services: ServiceAddresses
) -> None:
    worker: WorkerProcess = await worker_factory.start(
        stop_timeout_s=STOP_TIMEOUT_S, feedback_tokens=FEEDBACK_TOKEN
    )
    settings = worker.settings
    run = uuid.uuid4().hex[:8]
    await _predictions(services.postgres_dsn, run)
    accepted: list[str] = []
    posted = asyncio.Event()
    posting = asyncio.create_task(_post_until_refused(worker, run, accepted, posted))
    await asyncio.wait_for(posted.wait(), 120)
    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    try:
        code = await asyncio.to_thread(worker.process.wait, STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"still running {STOP_BOUND_S} s after SIGTERM; log:\n{worker.log_tail(60)}"
        ) from None
    took_s = time.monotonic() - stopped_at
    await posting
    assert code is not None, f"exit code {code} after {took_s:.1f} s"
    assert len(accepted) >= POSTS_BEFORE_STOP * LABELS_PER_POST
    # What the stopped worker did not write stays on the topic for the group's next worker.
    stored = await _stored(services.postgres_dsn, run)
    if not set(accepted) <= stored:
        await worker_factory.start(app_id=settings.app_id, topic_prefix=settings.topic_prefix)
        for _ in range(int(STORED_TIMEOUT_S * 2)):
            if set(accepted) <= stored:
                break
            await asyncio.sleep(0.5)
            stored = await _stored(services.postgres_dsn, run)
    missing = sorted(set(accepted) - stored)
    assert not missing, f"{len(missing)} of {len(accepted)} labels lost, e.g. {missing[:5]}"
    assert stored == set(accepted)  # nothing foreign, nothing refused by the 503s counted
