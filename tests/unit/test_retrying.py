"""The one backoff schedule and retry loop (phoenix_stream.retrying), without any service.

The loops that use it are tested against the real services as before: the sink's and the
feedback store's outages in tests/integration/test_prediction_sink.py and test_feedback.py,
the agents' in test_worker_faults.py, the deployments reader's in test_deployments.py.
"""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.retrying import Backoff, backoff_delay, logged_retry, retry_outages


class Outage(Exception):
    pass


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(5)
    for attempt, ceiling in [(0, 0.2), (1, 0.4), (2, 0.8), (4, 3.2), (5, 5.0), (500, 5.0)]:
        delays = [backoff_delay(attempt, 0.2, 5.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered, so workers hit together spread out


@given(
    min_s=st.floats(1e-4, 10.0),
    spread=st.floats(1.0, 1e3),
    failures=st.integers(0, 10_000),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_delay_is_never_below_half_the_minimum_nor_above_the_cap(
    min_s: float, spread: float, failures: int, seed: int
) -> None:
    backoff = Backoff(min_s, min_s * spread, random.Random(seed), failures=failures)
    delay = backoff.next_delay()
    assert min_s / 2 <= delay <= min_s * spread
    assert backoff.failures == failures + 1


@pytest.mark.parametrize(("min_s", "max_s"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_backoff_refuses_bounds_that_make_no_schedule(min_s: float, max_s: float) -> None:
    with pytest.raises(ValueError, match="min_backoff_s"):
        Backoff(min_s, max_s)


def test_reset_starts_again_from_the_shortest_delay() -> None:
    backoff = Backoff(1.0, 64.0, random.Random(1))
    for _ in range(6):
        backoff.next_delay()
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0


async def test_outages_are_waited_out_with_growing_delays_then_the_result_returned() -> None:
    outcomes: list[BaseException | str] = [Outage("a"), Outage("b"), Outage("c"), "done"]
    reports: list[tuple[str, int, float]] = []
    pauses: list[float] = []

    async def operation() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def pause(delay: float) -> None:
        pauses.append(delay)

    result = await retry_outages(
        operation,
        is_outage=lambda exc: isinstance(exc, Outage),
        backoff=Backoff(1.0, 3.0, random.Random(2)),
        on_retry=lambda exc, failures, delay: reports.append((str(exc), failures, delay)),
        pause=pause,
    )
    assert result == "done"
    assert [(text, failures) for text, failures, _ in reports] == [("a", 1), ("b", 2), ("c", 3)]
    assert pauses == [delay for _, _, delay in reports]
    for delay, ceiling in zip(pauses, [1.0, 2.0, 3.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling


async def test_a_failure_that_is_no_outage_is_raised_at_once() -> None:
    calls = 0

    async def operation() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug")

    async def pause(delay: float) -> None:
        raise AssertionError("no wait for a failure no retry mends")

    with pytest.raises(ValueError, match="a bug"):
        await retry_outages(
            operation, is_outage=lambda exc: isinstance(exc, Outage), backoff=Backoff(), pause=pause
        )
    assert calls == 1


async def test_a_stopping_caller_raises_its_own_error_instead_of_waiting() -> None:
    async def operation() -> None:
        raise Outage("broker gone")

    async def pause(delay: float) -> None:
        raise AssertionError("a stopping worker must not wait")

    with pytest.raises(RuntimeError, match="stopping") as raised:
        await retry_outages(
            operation,
            is_outage=lambda exc: isinstance(exc, Outage),
            backoff=Backoff(),
            stopping=lambda exc: RuntimeError(f"stopping after {exc}"),
            pause=pause,
        )
    assert isinstance(raised.value.__cause__, Outage)  # the outage stays visible


async def test_the_stop_error_keeps_a_cause_of_its_own() -> None:
    driver_error = ConnectionResetError("reset by peer")

    async def operation() -> None:
        raise Outage("write failed") from driver_error

    def stopping(exc: BaseException) -> BaseException:
        error = RuntimeError("stopping")
        error.__cause__ = exc.__cause__
        return error

    with pytest.raises(RuntimeError) as raised:
        await retry_outages(
            operation,
            is_outage=lambda exc: isinstance(exc, Outage),
            backoff=Backoff(),
            stopping=stopping,
        )
    assert raised.value.__cause__ is driver_error


async def test_the_stop_is_asked_only_after_an_outage() -> None:
    asked: list[BaseException] = []

    async def operation() -> str:
        return "first try"

    def stopping(exc: BaseException) -> BaseException | None:
        asked.append(exc)
        return RuntimeError("stopping")

    result = await retry_outages(
        operation, is_outage=lambda exc: True, backoff=Backoff(), stopping=stopping
    )
    assert result == "first try"
    assert asked == []


def test_a_logged_retry_counts_and_says_what_failed_and_when_it_tries_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counted: list[None] = []
    logger = logging.getLogger("phoenix_stream.test_retrying")
    report = logged_retry(logger, "Writing 3 rows failed", lambda: counted.append(None))
    with caplog.at_level(logging.WARNING, logger=logger.name):
        report(ConnectionResetError("reset by peer"), 2, 0.25)
    assert len(counted) == 1
    assert caplog.messages == [
        "Writing 3 rows failed (attempt 2): reset by peer; retrying in 0.25 s"
    ]
