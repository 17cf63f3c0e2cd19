"""Drift on real workers: verdicts and one alarm per trigger, windows kept across a restart
and a rebalance, and windowed-table memory that stays bounded (docs/architecture.md section 5;
faust-streaming #193 windows lost on worker death, #385 windows never expire after recovery).

Each test streams loan requests at a steady rate into its own worker group, from the
training distribution or shifted by one standard deviation, with windows of 2 s. Reports
are read back from the worker (``GET /v1/drift/{model}``, which reads PostgreSQL), the
``drift`` topic and ``/metrics``; the windows that received counts are read from the
``drift-counts`` topic's timestamps, which are the windows' clock.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from phoenix_stream.settings import AGENTS, Settings
from phoenix_stream.testing import consume_json, metric_value, read_to_end
from phoenix_stream.tools.worker_process import WorkerProcess
from phoenix_stream.training.datagen import (
    REQUEST_FEATURES,
    entity_id_for,
    sample_request_features,
)

MODEL = "credit-risk"
KEY = "credit-risk/1"  # the drift tables' key: model/version (the champion)
WINDOW_S = 2.0
# Every prediction is the champion's (no challenger), so every one is binned.
DRIFT = {
    "drift_window_s": WINDOW_S,
    "drift_min_window": 100,
    "challenger_version": "",
    "agents": AGENTS,  # drift and retrain are opt-in
}
REQUESTS_PER_TICK = 30
TICK_S = 0.2  # about 150 requests/s: some 300 rows a window, three times the minimum
SEEDED_ENTITIES = 2000  # conftest's ``seeded``: c000000..c001999
# Windows a key may hold: the one being filled, and older ones that late or replayed
# counts wrote again until the next close deletes them; never more as windows pass.
MAX_WINDOWS_HELD = 3
# Generous bounds for a loaded 2-core machine; the waits return as soon as they are met.
TIMEOUT_S = 90.0
POLL_S = 0.2

Report = dict[str, Any]


class Traffic:
    """Loan requests of seeded entities, ``REQUESTS_PER_TICK`` every ``TICK_S`` s, until stopped.

    ``shift`` (standard deviations) moves every request feature; 0 is the training data.
    """

    def __init__(self, producer: AIOKafkaProducer, settings: Settings, shift: float) -> None:
        self.producer = producer
        self.topic = settings.topic("requests")
        self.shift = shift
        self.sent = 0
        self._run = uuid.uuid4().hex[:8]
        self._rng = np.random.default_rng(11)

    def set_shift(self, shift: float) -> float:
        """Shift the requests from now on; when that was, epoch seconds."""
        self.shift = shift
        return time.time()

    async def run(self) -> None:
        """Produce until cancelled (pacing the load, not waiting for anything)."""
        while True:
            loans = sample_request_features(self._rng, REQUESTS_PER_TICK, self.shift)
            for j in range(REQUESTS_PER_TICK):
                entity = entity_id_for(int(self._rng.integers(0, SEEDED_ENTITIES)))
                request = {
                    "request_id": f"{self._run}-{self.sent}",
                    "entity_id": entity,
                    "features": {name: float(loans[name][j]) for name in REQUEST_FEATURES},
                }
                self.sent += 1
                await self.producer.send(self.topic, orjson.dumps(request), key=entity.encode())
            await asyncio.sleep(TICK_S)


@asynccontextmanager
async def traffic(
    producer: AIOKafkaProducer, settings: Settings, shift: float
) -> AsyncIterator[Traffic]:
    """Requests flowing while the block runs; stopped when it ends, also on failure."""
    stream = Traffic(producer, settings, shift)
    task = asyncio.create_task(stream.run())
    try:
        yield stream
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await producer.flush()


async def drift_view(worker: WorkerProcess) -> dict[str, Any]:
    """``GET /v1/drift/credit-risk?limit=1000`` of ``worker``."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{worker.base_url}/v1/drift/{MODEL}?limit=1000") as response,
    ):
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        assert "warning" not in body  # the worker runs the drift agents
        return body


class Watch:
    """Polls workers' drift views: the reports of this test, and the windows each holds."""

    def __init__(self, since: float) -> None:
        self.since = since  # epoch seconds: earlier windows belong to other tests
        self.held: list[int] = []  # windows of KEY held, one sample per poll of a worker

    async def reports(self, worker: WorkerProcess) -> list[Report]:
        """The reports of windows starting at ``since`` or later, oldest first."""
        body = await drift_view(worker)
        self.held.append(int(body["windows_held"].get(KEY, 0)))
        found = [r for r in body["reports"] if r["window_start"] >= self.since]
        return sorted(found, key=lambda r: float(r["window_start"]))

    async def until(
        self,
        worker: WorkerProcess,
        condition: Callable[[list[Report]], bool],
        also: Sequence[WorkerProcess] = (),
    ) -> list[Report]:
        """Poll ``worker`` until ``condition(reports)`` holds; AssertionError at the timeout.

        The windows held by the workers in ``also`` are sampled at each poll too.
        """
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            for other in also:
                await self.reports(other)
            found = await self.reports(worker)
            if condition(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"drift reports not there in {TIMEOUT_S} s: {summary(found)}; "
                    f"log {worker.log_path}:\n{worker.log_tail()}"
                )
            await asyncio.sleep(POLL_S)


def summary(reports: list[Report]) -> list[tuple[Any, ...]]:
    """(window_start, n, verdict, consecutive, alarm) per report, for failure messages."""
    return [
        (r["window_start"], r["n"], r["verdict"], r["consecutive"], r["alarm"]) for r in reports
    ]


def closed_after(reports: list[Report], at: float) -> list[Report]:
    """The reports stored at ``at`` (epoch seconds) or later."""
    return [r for r in reports if r["recorded_at"] >= at]


def check_run(reports: list[Report], persistence: int) -> None:
    """Each window once; the run of drifted windows carried on from window to window; the
    alarm on exactly the windows where the run reaches ``persistence``."""
    starts = [r["window_start"] for r in reports]
    assert len(starts) == len(set(starts)), summary(reports)
    run = int(reports[0]["consecutive"])
    for report in reports:
        verdict = report["verdict"]
        if report is not reports[0]:
            run = run + 1 if verdict == "drift" else 0 if verdict == "no_drift" else run
        assert report["consecutive"] == run, f"run broken at {report['window_start']}: " + str(
            summary(reports)
        )
        alarm = verdict == "drift" and run == persistence
        assert report["alarm"] is alarm, summary(reports)
        assert (report["trigger_id"] is not None) is alarm


async def counted_windows(settings: Settings, through: float) -> dict[float, int]:
    """Rows per window start in KEY's drift-counts records, read up to one at ``through`` s.

    The windows are those of the records' Kafka timestamps, as the drift-windows agent
    and Faust's table compute them (the broker's end offsets are unreliable, so the read
    stops at a record, not at the end).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    rows: Counter[float] = Counter()
    try:
        topic = settings.topic("drift-counts")
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + TIMEOUT_S
        latest = 0.0
        while latest < through and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                for message in messages:
                    if message.key != KEY.encode():
                        continue
                    at = message.timestamp / 1000.0
                    latest = max(latest, at)
                    rows[at - at % WINDOW_S] += int(orjson.loads(message.value or b"{}")["n"])
    finally:
        await consumer.stop()
    assert latest >= through, f"drift-counts read only up to {latest}, not {through}"
    return dict(rows)


async def check_no_window_lost(settings: Settings, reports: list[Report]) -> None:
    """Every window that received counts between the first and the last report is reported,
    with at least the rows counted into it; no report for a window without counts."""
    first, last = reports[0]["window_start"], reports[-1]["window_start"]
    counted = await counted_windows(settings, last + WINDOW_S)
    expected = sorted(start for start in counted if first <= start <= last)
    assert [r["window_start"] for r in reports] == expected, (
        f"reported {summary(reports)}; windows with counts {expected}"
    )
    for report in reports[1:]:  # the first window may have started before ``since``
        assert report["n"] >= counted[report["window_start"]], summary(reports)


async def topic_reports(settings: Settings, reports: list[Report]) -> list[Report]:
    """KEY's reports on the drift topic, once every window of ``reports`` is there."""
    wanted = {r["window_start"] for r in reports}

    def covered(records: list[dict[str, object]]) -> bool:
        return wanted <= {r.get("window_start") for r in records}

    records = await consume_json(
        settings.kafka_url, settings.topic("drift"), until=covered, timeout_s=TIMEOUT_S
    )
    assert covered(records), f"drift topic lacks windows of {summary(reports)}"
    return [r for r in records if r.get("model") == MODEL and r.get("version") == "1"]


def check_topic(on_topic: list[Report], stored: list[Report], *, repeats_allowed: bool) -> None:
    """The topic holds the stored reports; each window once, or repeated unchanged only
    where the worker may have died between publishing a report and saving its state."""
    by_start = {r["window_start"]: r for r in stored}
    fields = ("window_end", "n", "verdict", "consecutive", "alarm", "trigger_id")
    for record in on_topic:
        if record["window_start"] in by_start:
            stored_one = by_start[record["window_start"]]
            assert {f: record[f] for f in fields} == {f: stored_one[f] for f in fields}
    times = Counter(r["window_start"] for r in on_topic)
    if not repeats_allowed:
        assert max(times.values()) == 1, f"windows closed twice: {times}"


async def stop(worker: WorkerProcess, how: str = "stop") -> int | None:
    """SIGTERM (``stop``) or SIGKILL (``kill``) a worker, off the event loop."""
    return await asyncio.to_thread(worker.kill if how == "kill" else worker.stop)


async def test_shifted_traffic_drifts_and_alarms_once(
    worker_factory: Any, producer: AIOKafkaProducer
) -> None:
    # Retraining asked for, never enough rows and no wait: the request is what is checked.
    never_enough = {
        "retrain_min_rows": 1_000_000,
        "retrain_max_rows": 1_000_000,
        "retrain_wait_s": 0,
    }
    worker: WorkerProcess = await worker_factory.start(**DRIFT, auto_retrain=True, **never_enough)
    settings = worker.settings
    watch = Watch(since=time.time())
    try:
        async with traffic(producer, settings, shift=0.0) as requests:
            # Training-distribution traffic first, then shifted requests.
            await watch.until(worker, lambda rs: sum(r["verdict"] == "no_drift" for r in rs) >= 3)
            shifted_at = requests.set_shift(1.0)
            # Drift beyond the alarm: two windows more must not alarm again.
            reports = await watch.until(
                worker,
                lambda rs: any(r["consecutive"] >= settings.drift_persistence + 2 for r in rs),
            )
        drifted = await metric_value(
            worker.base_url, "phoenix_drift_windows_total", model=MODEL, verdict="drift"
        )
        alarms = await metric_value(worker.base_url, "phoenix_drift_alarms_total", model=MODEL)
        # Read after the metrics: each counted window was stored before it was counted.
        stored_after = await watch.reports(worker)
        on_topic = await topic_reports(settings, reports)
    finally:
        await stop(worker)

    before = [r for r in reports if r["window_end"] <= shifted_at]
    # One window of margin: requests sent just before the shift may be scored after it.
    after = [r for r in reports if r["window_start"] >= shifted_at + WINDOW_S]
    assert {r["verdict"] for r in before} <= {"no_drift", "insufficient"}, summary(reports)
    assert sum(r["verdict"] == "no_drift" for r in before) >= 3, summary(reports)
    assert after and all(r["verdict"] == "drift" for r in after), summary(reports)
    check_run(reports, settings.drift_persistence)
    raised = [r for r in reports if r["alarm"]]
    assert len(raised) == 1 and raised[0]["consecutive"] == settings.drift_persistence
    assert raised[0]["trigger_id"] == f"{MODEL}:1:{round(raised[0]['window_start'] * 1000)}"
    await check_no_window_lost(settings, reports)
    check_topic(on_topic, stored_after, repeats_allowed=False)
    # Prometheus counts each stored window once, on the worker that closed it.
    stored_drift = [r for r in stored_after if r["verdict"] == "drift"]
    assert sum(r["verdict"] == "drift" for r in reports) <= drifted <= len(stored_drift)
    assert alarms == 1
    assert max(watch.held) <= MAX_WINDOWS_HELD, f"windows held: {watch.held}"
    # The alarm asks once for a retraining of its trigger, on the traffic after its
    # window (the worker has stopped: the topic holds everything it will).
    requests = await read_to_end(settings.kafka_url, settings.topic("retrain"))
    assert [(r["trigger_id"], r["data_since"], r["actor"]) for r in requests] == [
        (raised[0]["trigger_id"], raised[0]["window_end"], "drift-monitor")
    ], requests


@pytest.mark.brokers("tansu", "kafka")
@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_restart_mid_window_carries_the_run_on(
    worker_factory: Any, producer: AIOKafkaProducer, how: str
) -> None:
    persistence = 4  # reached only after the restart if the run survives it
    first: WorkerProcess = await worker_factory.start(**DRIFT, drift_persistence=persistence)
    settings = first.settings
    watch = Watch(since=time.time())
    second: WorkerProcess | None = None
    try:
        async with traffic(producer, settings, shift=1.0):
            await watch.until(first, lambda rs: any(r["consecutive"] >= 2 for r in rs))
            # Mid-window: the window being filled holds counts that only the table has.
            restarted_at = time.time()
            code = await stop(first, how)
            assert code == (-signal.SIGKILL if how == "kill" else 0), first.log_tail()
            second = await worker_factory.start(
                **DRIFT,
                drift_persistence=persistence,
                app_id=settings.app_id,
                topic_prefix=settings.topic_prefix,
            )
            # Windows enough after the restart that closed ones had to be deleted (held),
            # and the run at the persistence: on a busy machine a window may hold too few
            # rows to judge, which neither extends nor breaks the run.
            reports = await watch.until(
                second,
                lambda rs: (
                    len(after := closed_after(rs, restarted_at)) >= 4
                    and any(r["consecutive"] >= persistence for r in after)
                ),
            )
        on_topic = await topic_reports(settings, reports)
    finally:
        await stop(first)
        if second is not None:
            await stop(second)

    before, after = (
        reports[: -len(closed_after(reports, restarted_at))],
        closed_after(reports, restarted_at),
    )
    assert before and before[-1]["consecutive"] >= 2, summary(reports)
    # The new worker went on counting where the old one stopped (a lost monitor would
    # start again at 1) and raised the one alarm at the fourth drifted window in a row.
    check_run(reports, persistence)
    assert after[0]["consecutive"] >= before[-1]["consecutive"], summary(reports)
    assert [r["consecutive"] for r in reports if r["alarm"]] == [persistence]
    await check_no_window_lost(settings, reports)
    # A SIGKILL may come between publishing a report and saving the monitor's state.
    check_topic(on_topic, reports, repeats_allowed=how == "kill")
    assert max(watch.held) <= MAX_WINDOWS_HELD, f"windows held: {watch.held}"


async def test_rebalance_moves_the_windows_without_gap_or_double(
    worker_factory: Any, producer: AIOKafkaProducer
) -> None:
    persistence = 1000  # no alarm: the run just grows by one each window
    first: WorkerProcess = await worker_factory.start(**DRIFT, drift_persistence=persistence)
    settings = first.settings
    watch = Watch(since=time.time())
    second: WorkerProcess | None = None
    try:
        async with traffic(producer, settings, shift=1.0):
            await watch.until(first, lambda rs: len(rs) >= 2)
            joined_at = time.time()
            second = await worker_factory.start(
                **DRIFT,
                drift_persistence=persistence,
                app_id=settings.app_id,
                topic_prefix=settings.topic_prefix,
            )
            await watch.until(
                second, lambda rs: len(closed_after(rs, joined_at)) >= 3, also=[first]
            )
            left_at = time.time()
            assert await stop(first) == 0, first.log_tail()
            reports = await watch.until(second, lambda rs: len(closed_after(rs, left_at)) >= 3)
        on_topic = await topic_reports(settings, reports)
    finally:
        await stop(first)
        if second is not None:
            await stop(second)

    check_run(reports, persistence)
    # A window the rebalance paused may hold too few rows to judge: "insufficient".
    assert {r["verdict"] for r in reports} <= {"drift", "insufficient"}, summary(reports)
    await check_no_window_lost(settings, reports)
    # One owner at a time: no window closed by both workers, or twice by one.
    check_topic(on_topic, reports, repeats_allowed=False)
    assert max(watch.held) <= MAX_WINDOWS_HELD, f"windows held: {watch.held}"
