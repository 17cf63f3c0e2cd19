"""Concurrent HTTP predictions share predictor calls, each caller gets its own part, and
every caller is answered: overload, deadline and shutdown included."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix_stream.exceptions import DeliveryTimeout, Overloaded, ShuttingDown
from phoenix_stream.messages.requests import ParsedRequest
from phoenix_stream.serving.coalescer import Coalescer
from phoenix_stream.serving.predictor import Outcome, Rejection, Scored


def request(name: str) -> ParsedRequest:
    return ParsedRequest(name, "e", "m", None, None, None)


def scored(r: ParsedRequest) -> Scored:
    return Scored(
        r.request_id, "e", "m", "1", "champion", 0.5, 1, {}, [], False, "http", 0.0, 0.0, 0.0, None
    )


class Recorder:
    """Scores by echoing once ``gate`` opens; 'bad' requests are rejected.

    Records each call's request ids, and the calls that ran to the end.
    """

    def __init__(self, *, open_gate: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.finished: list[list[str]] = []
        self.gate = asyncio.Event()
        if open_gate:
            self.gate.set()
        self.started = asyncio.Event()
        self.done = asyncio.Event()

    async def __call__(self, requests: list[ParsedRequest], received_at: float) -> Outcome:
        ids = [r.request_id for r in requests]
        self.calls.append(ids)
        self.started.set()
        await self.gate.wait()
        outcome = Outcome()
        for r in requests:
            if r.request_id.startswith("bad"):
                outcome.rejected.append(Rejection(r, "unknown_model", "no", "model"))
            else:
                outcome.served.append(scored(r))
                outcome.served_for.append(r)
        self.finished.append(ids)
        self.done.set()
        return outcome


def served_ids(outcome: Outcome) -> list[str]:
    return [s.request_id for s in outcome.served]


async def test_requests_arriving_during_a_batch_share_the_next_one() -> None:
    score = Recorder()
    coalescer = Coalescer(score)
    first = asyncio.create_task(coalescer.submit([request("a")]))
    await score.started.wait()  # "a" is being scored alone
    later = [asyncio.create_task(coalescer.submit([request(n)])) for n in ("b", "bad", "c")]
    await asyncio.sleep(0)  # let them queue
    score.gate.set()
    results = await asyncio.gather(first, *later)
    assert score.calls == [["a"], ["b", "bad", "c"]]
    assert [served_ids(o) for o in results] == [["a"], ["b"], [], ["c"]]
    assert [r.request.request_id for r in results[2].rejected] == ["bad"]


async def test_a_batch_holds_at_most_max_batch_requests_unless_one_caller_is_larger() -> None:
    score = Recorder()
    coalescer = Coalescer(score, max_batch=2)
    first = asyncio.create_task(coalescer.submit([request("a")]))
    await score.started.wait()
    later = [
        asyncio.create_task(coalescer.submit(names))
        for names in ([request("b")], [request("c")], [request("d")], [request(n) for n in "xyz"])
    ]
    await asyncio.sleep(0)
    score.gate.set()
    await asyncio.gather(first, *later)
    assert score.calls == [["a"], ["b", "c"], ["d"], ["x", "y", "z"]]


async def test_a_failing_batch_fails_its_callers_and_the_next_batch_runs() -> None:
    calls = 0

    async def flaky(requests: list[ParsedRequest], received_at: float) -> Outcome:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("kafka down")
        return Outcome()

    coalescer = Coalescer(flaky)
    with pytest.raises(RuntimeError, match="kafka down"):
        await coalescer.submit([request("a")])
    assert (await coalescer.submit([request("b")])).served == []


async def test_an_outcome_that_cannot_be_split_fails_its_callers_instead_of_hanging() -> None:
    async def foreign(requests: list[ParsedRequest], received_at: float) -> Outcome:
        stranger = request("stranger")
        outcome = Outcome()
        outcome.served.append(scored(stranger))
        outcome.served_for.append(stranger)
        return outcome

    with pytest.raises(KeyError):
        await Coalescer(foreign).submit([request("a")])


async def test_an_empty_submit_is_answered_without_scoring() -> None:
    score = Recorder(open_gate=True)
    assert served_ids(await Coalescer(score).submit([])) == []
    assert score.calls == []


async def test_a_submit_beyond_the_queue_limit_is_refused_at_once() -> None:
    score = Recorder()
    coalescer = Coalescer(score, max_waiting=3)
    running = asyncio.create_task(coalescer.submit([request("a")]))
    await score.started.wait()  # "a" is running: it no longer counts as waiting
    queued = [
        asyncio.create_task(coalescer.submit([request("b"), request("c")])),
        asyncio.create_task(coalescer.submit([request("d")])),
    ]
    await asyncio.sleep(0)
    assert coalescer.waiting == 3
    with pytest.raises(Overloaded, match="limit 3"):
        await coalescer.submit([request("e")])
    score.gate.set()
    results = await asyncio.gather(running, *queued)
    assert [served_ids(o) for o in results] == [["a"], ["b", "c"], ["d"]]
    assert coalescer.waiting == 0
    assert served_ids(await coalescer.submit([request("e")])) == ["e"]  # room again


async def test_an_oversize_submit_into_an_empty_queue_is_taken() -> None:
    score = Recorder(open_gate=True)
    coalescer = Coalescer(score, max_waiting=2)
    names = ["a", "b", "c"]
    assert served_ids(await coalescer.submit([request(n) for n in names])) == names


async def test_a_caller_past_its_deadline_times_out_and_the_batch_goes_on() -> None:
    score = Recorder()
    coalescer = Coalescer(score, deadline_s=0.05)
    with pytest.raises(DeliveryTimeout, match=r"0\.05 s"):
        await coalescer.submit([request("a")])
    assert score.calls == [["a"]] and score.finished == []
    score.gate.set()  # the shared batch was not cancelled: it runs to its end
    await score.done.wait()
    assert score.finished == [["a"]]


async def test_a_caller_that_gave_up_while_waiting_is_not_scored() -> None:
    score = Recorder()
    coalescer = Coalescer(score, deadline_s=0.3)
    first = asyncio.create_task(coalescer.submit([request("a")]))
    await score.started.wait()
    gives_up = asyncio.create_task(coalescer.submit([request("b")]))
    with pytest.raises(DeliveryTimeout):
        await first
    with pytest.raises(DeliveryTimeout):
        await gives_up
    assert coalescer.waiting == 1  # held until the drainer drops it: the queue stays bounded
    after = asyncio.create_task(coalescer.submit([request("c")]))
    await asyncio.sleep(0)
    score.gate.set()
    assert served_ids(await after) == ["c"]
    assert score.calls == [["a"], ["c"]]


async def test_a_cancelled_caller_does_not_cancel_the_batch_it_shares() -> None:
    score = Recorder()
    coalescer = Coalescer(score)
    b = asyncio.create_task(coalescer.submit([request("b")]))
    c = asyncio.create_task(coalescer.submit([request("c")]))
    await score.started.wait()
    assert score.calls == [["b", "c"]]
    b.cancel()  # a client that disconnects mid-batch
    score.gate.set()
    assert served_ids(await c) == ["c"]
    assert b.cancelled()
    assert score.finished == [["b", "c"]]


async def test_close_answers_waiting_callers_and_lets_the_running_batch_finish() -> None:
    score = Recorder()
    coalescer = Coalescer(score, grace_s=30.0)
    running = asyncio.create_task(coalescer.submit([request("a")]))
    await score.started.wait()
    waiting = asyncio.create_task(coalescer.submit([request("b")]))
    await asyncio.sleep(0)
    closing = asyncio.create_task(coalescer.close())
    with pytest.raises(ShuttingDown):
        await waiting  # answered at once, before the grace period ends
    assert not closing.done()
    with pytest.raises(ShuttingDown):
        await coalescer.submit([request("c")])
    score.gate.set()  # the running batch finishes within its grace period
    await closing
    assert served_ids(await running) == ["a"]
    assert score.calls == [["a"]]


async def test_close_answers_a_batch_that_outlives_the_grace_period() -> None:
    score = Recorder()  # its gate never opens
    coalescer = Coalescer(score, grace_s=0.05)
    running = asyncio.create_task(coalescer.submit([request("a")]))
    await score.started.wait()
    await coalescer.close()
    with pytest.raises(ShuttingDown):
        await running
    assert score.finished == []


async def test_close_answers_callers_even_if_the_score_ignores_cancellation() -> None:
    release = asyncio.Event()

    async def stubborn(requests: list[ParsedRequest], received_at: float) -> Outcome:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # a misbehaving score: swallows the cancel
        return Outcome()

    coalescer = Coalescer(stubborn, grace_s=0.05)
    running = asyncio.create_task(coalescer.submit([request("a")]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await coalescer.close()
    with pytest.raises(ShuttingDown):
        await running
    release.set()  # let the stubborn task end so no task outlives the test


async def test_close_with_nothing_in_flight_returns_at_once() -> None:
    coalescer = Coalescer(Recorder(open_gate=True))
    await coalescer.close()
    await coalescer.close()  # twice is harmless
    with pytest.raises(ShuttingDown):
        await coalescer.submit([request("a")])


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=12),
    max_batch=st.integers(min_value=1, max_value=8),
)
def test_every_caller_gets_exactly_its_own_requests(sizes: list[int], max_batch: int) -> None:
    async def scenario() -> None:
        score = Recorder(open_gate=True)
        coalescer = Coalescer(score, max_batch=max_batch, max_waiting=1000)
        submitted = [[request(f"{i}-{j}") for j in range(n)] for i, n in enumerate(sizes)]
        results = await asyncio.gather(*(coalescer.submit(s) for s in submitted))
        assert [served_ids(o) for o in results] == [[r.request_id for r in s] for s in submitted]
        for call in score.calls:  # a batch over max_batch holds a single caller's requests
            assert len(call) <= max_batch or len({c.split("-")[0] for c in call}) == 1

    # A private loop: the session loop of pytest-asyncio is not running in a sync test.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
