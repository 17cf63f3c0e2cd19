"""Concurrent HTTP predictions share predictor calls, and each caller gets its own part."""

from __future__ import annotations

import asyncio

import pytest

from phoenix_stream.messages.requests import ParsedRequest
from phoenix_stream.serving.coalescer import Coalescer
from phoenix_stream.serving.predictor import Outcome, Rejection, Scored


def request(name: str) -> ParsedRequest:
    return ParsedRequest(name, "e", "m", None, None, None)


class Recorder:
    """Scores by echoing; 'bad' requests are rejected; records each call's size."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()

    async def __call__(self, requests: list[ParsedRequest], received_at: float) -> Outcome:
        self.calls.append([r.request_id for r in requests])
        await self.gate.wait()
        outcome = Outcome()
        for r in requests:
            if r.request_id.startswith("bad"):
                outcome.rejected.append(Rejection(r, "unknown_model", "no", "model"))
            else:
                outcome.served.append(
                    Scored(
                        r.request_id,
                        "e",
                        "m",
                        "1",
                        "champion",
                        0.5,
                        1,
                        {},
                        [],
                        False,
                        "http",
                        0.0,
                        0.0,
                        0.0,
                        None,
                    )
                )
                outcome.served_for.append(r)
        return outcome


async def test_requests_arriving_during_a_batch_share_the_next_one() -> None:
    score = Recorder()
    coalescer = Coalescer(score)
    first = asyncio.create_task(coalescer.submit([request("a")]))
    await asyncio.sleep(0)  # "a" is being scored alone
    later = [asyncio.create_task(coalescer.submit([request(n)])) for n in ("b", "bad", "c")]
    await asyncio.sleep(0)
    score.gate.set()
    results = await asyncio.gather(first, *later)
    assert score.calls == [["a"], ["b", "bad", "c"]]
    assert [[s.request_id for s in o.served] for o in results] == [["a"], ["b"], [], ["c"]]
    assert [r.request.request_id for r in results[2].rejected] == ["bad"]


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
