"""LagWatch keeps /ready's lag fields and the gauges, and never raises.

A broker that is not there is a real closed port (no fake); the gauges' series after a
revocation are driven by a stand-in sample. Sampling a real broker is in
tests/integration/test_consumer_lag.py (Apache Kafka and Tansu).
"""

from __future__ import annotations

import asyncio
import time

from phoenix_stream import metrics
from phoenix_stream.streaming.lag import LagReport
from phoenix_stream.streaming.lag_watch import LagWatch, assigned_partitions
from phoenix_stream.tools.worker_process import free_port


def _lag_series() -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for metric in metrics.CONSUMER_LAG.collect():
        for sample in metric.samples:
            found[(sample.labels["topic"], sample.labels["partition"])] = sample.value
    return found


def _trusted() -> float:
    return metrics.REGISTRY.get_sample_value("phoenix_consumer_lag_trusted") or 0.0


def _watch(bootstrap: str, **options: object) -> LagWatch:
    values: dict[str, object] = {"trust": "auto", "interval_s": 1.0, "timeout_s": 2.0}
    values.update(options)
    return LagWatch(bootstrap, "g", ["t.requests"], lambda: [("t.requests", 0)], **values)  # type: ignore[arg-type]


async def test_a_broker_that_does_not_answer_is_a_reason_never_an_error() -> None:
    watch = _watch(f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    report = await watch.sample()
    assert time.monotonic() - started < 10.0  # bounded by timeout_s and the close
    assert report.lag is None and report.sampled_at is None
    assert report.reason is not None and report.reason.startswith("lag not sampled: ")
    assert watch.to_json()["lag_reason"] == report.reason
    assert _trusted() == 0.0
    await watch.sample()  # again, with clients opened afresh: still no exception
    await watch.on_stop()


async def test_untrusted_by_setting_asks_the_broker_nothing() -> None:
    watch = _watch(f"127.0.0.1:{free_port()}", trust="untrusted")
    report = await asyncio.wait_for(watch.sample(), 1.0)
    assert report.lag is None and report.reason is not None
    assert "PHOENIX_LAG_TRUST=untrusted" in report.reason
    assert watch._admin is None and watch._offsets is None


class _Scripted(LagWatch):
    """Answers each sample from a list of reports instead of a broker."""

    reports: list[LagReport]

    async def _sample(self) -> LagReport:
        return self.reports.pop(0)


async def test_revoked_partitions_lose_their_series_and_a_failure_keeps_the_age() -> None:
    watch = _Scripted("unused:1", "g", ["t.requests"], list, trust="trusted", interval_s=1.0)
    clock = [100.0]
    watch._clock = lambda: clock[0]
    watch.reports = [
        LagReport({"t.requests": {0: 3, 1: 4}}, None, 100.0),
        LagReport({"t.requests": {1: 0}}, None, 101.0),
    ]
    await watch.sample()
    assert _lag_series() == {("t.requests", "0"): 3.0, ("t.requests", "1"): 4.0}
    assert _trusted() == 1.0
    await watch.sample()  # partition 0 revoked
    assert _lag_series() == {("t.requests", "1"): 0.0}

    async def broken() -> LagReport:
        raise OSError("connection reset")

    watch._sample = broken  # type: ignore[method-assign]
    clock[0] = 104.0
    report = await watch.sample()
    assert _lag_series() == {} and _trusted() == 0.0
    assert report.to_json(clock[0]) == {
        "lag": None,
        "lag_reason": "lag not sampled: OSError: connection reset",
        "lag_age_s": 3.0,
    }


def test_assigned_partitions_of_a_consumer_that_cannot_say_are_none() -> None:
    class NotStarted:
        @property
        def consumer(self) -> object:
            raise RuntimeError("consumer not started")

    assert assigned_partitions(NotStarted()) == []
