"""How the simulator cuts its requests into Kafka records (``simulate --batch N``).

The records themselves, produced and predicted, are tested against the real broker in
tests/integration/test_pipeline.py; here only the cut, which once made records of 25
requests for ``--batch 100`` at 500 req/s (it cut per 50 ms tick).
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.tools.simulator import encode_records, full_records


def _requests(start: int, n: int) -> list[dict[str, Any]]:
    return [{"request_id": f"r{i}", "entity_id": f"e{i % 7}"} for i in range(start, start + n)]


@given(
    batch=st.integers(1, 300),
    ticks=st.lists(st.integers(0, 400), min_size=1, max_size=40),
)
def test_every_record_but_the_last_holds_batch_requests_and_none_is_lost(
    batch: int, ticks: list[int]
) -> None:
    pending: list[dict[str, Any]] = []
    made = 0
    records: list[list[dict[str, Any]]] = []
    for index, n in enumerate(ticks):
        ready, pending = full_records(
            pending + _requests(made, n), batch, last=index == len(ticks) - 1
        )
        made += n
        for _, value in encode_records(ready, batch):
            decoded = orjson.loads(value)
            records.append(decoded if isinstance(decoded, list) else [decoded])
    assert pending == []
    assert [r["request_id"] for record in records for r in record] == [f"r{i}" for i in range(made)]
    assert all(len(record) == batch for record in records[:-1])
    assert all(1 <= len(record) <= batch for record in records)


def test_a_tick_smaller_than_a_batch_waits_for_the_next() -> None:
    ready, rest = full_records(_requests(0, 25), 100, last=False)
    assert (ready, len(rest)) == ([], 25)
    ready, rest = full_records(rest + _requests(25, 80), 100, last=False)
    assert (len(ready), len(rest)) == (100, 5)


def test_single_request_records_are_never_held_back() -> None:
    ready, rest = full_records(_requests(0, 3), 1, last=False)
    assert (len(ready), rest) == (3, [])
