"""The consumer patch: a record is delivered without mode's task race while flow is active.

A real worker's consumer runs it in every integration test; a rebalance under load in
tests/integration/test_worker_faults.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mode.utils.locks import Event

from phoenix_stream.streaming.transport import _ShortFetchConsumer


def consumer() -> Any:
    # Only what wait_first touches; building a real one needs a broker and an app.
    patched: Any = _ShortFetchConsumer.__new__(_ShortFetchConsumer)
    patched.suspend_flow = Event()
    patched._stopped = Event()
    patched._crashed = Event()
    patched.loop = asyncio.get_running_loop()
    return patched


async def test_while_flow_is_active_the_delivery_is_awaited_directly() -> None:
    patched = consumer()
    tasks_before = len(asyncio.all_tasks())
    seen: list[int] = []

    async def deliver() -> str:
        seen.append(len(asyncio.all_tasks()))
        return "delivered"

    result = await patched.wait_first(deliver(), patched.suspend_flow.wait())
    assert result.results == ["delivered"] and result.stopped is False
    assert seen == [tasks_before]  # no task was created to deliver it


async def test_while_flow_is_suspended_modes_race_decides() -> None:
    patched = consumer()
    patched.suspend_flow.set()
    started = asyncio.Event()

    async def deliver() -> str:
        started.set()
        await asyncio.sleep(3600)
        return "never"

    result = await patched.wait_first(deliver(), patched.suspend_flow.wait())
    # mode raced both: the suspension won, the delivery did not complete.
    assert result.results == [True]  # the suspension event won
    assert started.is_set()


async def test_other_calls_keep_modes_behaviour() -> None:
    patched = consumer()

    async def slow() -> None:
        await asyncio.sleep(3600)

    result = await patched.wait_first(slow(), timeout=0.01)
    assert result.done == [] and result.results == []
    with pytest.raises(ZeroDivisionError):

        async def fails() -> None:
            raise ZeroDivisionError

        await patched.wait_first(fails(), patched.suspend_flow.wait())
