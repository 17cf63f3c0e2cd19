"""The project's own producers wait for every in-sync replica (acks=all)."""

from __future__ import annotations

import pytest

from phoenix_stream.streaming.producers import new_producer


@pytest.mark.parametrize("options", [{}, {"linger_ms": 5}])
async def test_own_producers_use_acks_all(options: dict[str, int]) -> None:
    producer = new_producer("kafka://127.0.0.1:1", **options)
    try:
        assert producer._sender._acks == -1  # aiokafka 0.14 keeps it in its Sender; -1 is "all"
    finally:
        await producer.stop()  # never started: nothing to flush, but it must be closed
    with pytest.raises(TypeError, match="acks=all"):
        new_producer("kafka://127.0.0.1:1", acks=1)
