"""The adaptive fetch wait: longer while the broker starves partitions, back when not.

``FetchWait`` and ``starved`` are pure; ``adapt_fetch_wait`` (patch (8) of
streaming/transport.py) is driven here with a stand-in for aiokafka's fetcher, and on
both real brokers in tests/integration/test_fetch_wait.py.
"""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream import metrics
from phoenix_stream.streaming.fetch_wait import FetchWait, PartitionAnswer
from phoenix_stream.streaming.transport import adapt_fetch_wait


def _answers(*answers: PartitionAnswer) -> dict[str, PartitionAnswer]:
    return {f"p{i}": answer for i, answer in enumerate(answers)}


EMPTY = PartitionAnswer(5, delivered=False, highwater=9)  # records wait, none came


def test_a_partition_is_starved_by_two_empty_answers_at_one_offset() -> None:
    wait = FetchWait(10)
    assert wait.after_fetch(_answers(EMPTY)) == []  # once: maybe written meanwhile
    assert wait.after_fetch(_answers(EMPTY)) == ["p0"]
    assert wait.after_fetch(_answers(PartitionAnswer(6, False, 9))) == []  # it moved on
    assert wait.after_fetch(_answers(PartitionAnswer(6, False, 9))) == ["p0"]
    assert wait.after_fetch(_answers(PartitionAnswer(6, True, 9))) == []
    assert wait.after_fetch(_answers(PartitionAnswer(6, False, 9))) == []


def test_a_caught_up_or_unknown_partition_is_never_starved() -> None:
    wait = FetchWait(10)
    for _ in range(3):
        assert wait.after_fetch(_answers(PartitionAnswer(9, False, 9))) == []
        assert wait.after_fetch(_answers(PartitionAnswer(5, False, None))) == []
        assert wait.after_fetch(_answers(PartitionAnswer(5, True, 9))) == []
    assert wait.current_ms == 10


def test_the_wait_doubles_while_fetches_starve_and_halves_back() -> None:
    wait = FetchWait(10, max_ms=1000)
    wait.after_fetch(_answers(EMPTY))
    grown = []
    for _ in range(8):
        wait.after_fetch(_answers(EMPTY))
        grown.append(wait.current_ms)
    assert grown == [20, 40, 80, 160, 320, 640, 1000, 1000]
    shrunk = []
    for _ in range(8):
        wait.after_fetch({})
        shrunk.append(wait.current_ms)
    assert shrunk == [500, 250, 125, 62, 31, 15, 10, 10]


def test_a_zero_wait_grows_too() -> None:
    wait = FetchWait(0)
    wait.after_fetch(_answers(EMPTY))
    wait.after_fetch(_answers(EMPTY))
    assert wait.current_ms == 10
    wait.after_fetch({})
    assert wait.current_ms == 5


@given(
    base=st.integers(0, 2000),
    cap=st.integers(0, 5000),
    fetches=st.lists(
        st.dictionaries(
            st.integers(0, 3),
            st.builds(
                PartitionAnswer,
                offset=st.integers(0, 3),
                delivered=st.booleans(),
                highwater=st.none() | st.integers(0, 5),
            ),
            max_size=4,
        ),
        max_size=60,
    ),
)
def test_the_wait_stays_between_the_base_and_the_cap(
    base: int, cap: int, fetches: list[dict[int, PartitionAnswer]]
) -> None:
    wait = FetchWait(base, max_ms=cap)
    for answers in fetches:
        starved = wait.after_fetch(dict(answers))
        assert set(starved) <= {p for p, a in answers.items() if a.empty_with_records_waiting}
        assert base <= wait.current_ms <= max(base, cap)
    for _ in range(16):  # 2**16 > any cap here: halving reaches the base
        wait.after_fetch({})
    assert wait.current_ms == base


class _State:
    def __init__(self, position: int, highwater: int | None) -> None:
        self.has_valid_position = True
        self.position = position
        self.highwater = highwater


class _Assignment:
    def __init__(self, states: dict[TopicPartition, _State]) -> None:
        self.active = True
        self.states = states

    def state_value(self, tp: TopicPartition) -> _State | None:
        return self.states.get(tp)


class _Request:
    def __init__(self, positions: dict[TopicPartition, int]) -> None:
        by_topic: dict[str, list[tuple[int, int, int]]] = {}
        for tp, offset in positions.items():
            by_topic.setdefault(tp.topic, []).append((tp.partition, offset, 1 << 20))
        self.topics = list(by_topic.items())


class _Fetcher:
    """aiokafka's Fetcher as far as the patch uses it; ``answers`` says what comes back."""

    def __init__(self) -> None:
        self._fetch_max_wait_ms = 10
        self._records: dict[TopicPartition, object] = {}
        self.answers: dict[TopicPartition, int] = {}  # tp -> records sent

    async def _proc_fetch_request(self, assignment: Any, node_id: int, request: Any) -> bool:
        for tp, sent in self.answers.items():
            if sent:
                self._records[tp] = object()
        return bool(self._records)


A = TopicPartition("drift-counts", 0)
B = TopicPartition("requests", 0)


async def _fetch(fetcher: _Fetcher, assignment: _Assignment) -> None:
    positions = {tp: state.position for tp, state in assignment.states.items()}
    await fetcher._proc_fetch_request(assignment, 111, _Request(positions))
    fetcher._records.clear()  # handed to Faust before the next fetch


async def test_the_patch_lengthens_the_wait_of_the_next_request_while_a_partition_starves() -> None:
    fetcher = _Fetcher()
    adapt_fetch_wait(fetcher, FetchWait(10))
    assignment = _Assignment({A: _State(1563, 11086), B: _State(40, 90)})
    starved_before = metrics.FETCH_STARVED._value.get()

    fetcher.answers = {A: 0, B: 50}  # A has records waiting and gets none
    for expected in (10, 20, 40, 80):
        await _fetch(fetcher, assignment)
        assert fetcher._fetch_max_wait_ms == expected
    assert metrics.FETCH_STARVED._value.get() - starved_before == 3
    assert metrics.FETCH_WAIT._value.get() == 0.08

    fetcher.answers = {A: 4000, B: 50}  # the longer wait brought A's records
    await _fetch(fetcher, assignment)
    assert fetcher._fetch_max_wait_ms == 40


async def test_a_caught_up_partition_or_a_sought_one_starves_nothing() -> None:
    fetcher = _Fetcher()
    adapt_fetch_wait(fetcher, FetchWait(10))
    caught_up = _Assignment({A: _State(90, 90)})
    for _ in range(3):
        await _fetch(fetcher, caught_up)
    assert fetcher._fetch_max_wait_ms == 10

    # Sought while the fetch was out: aiokafka drops that answer, and so does the patch.
    assignment = _Assignment({A: _State(5, 90)})
    for _ in range(3):
        await fetcher._proc_fetch_request(assignment, 111, _Request({A: 3}))
    assert fetcher._fetch_max_wait_ms == 10

    # An answer after the assignment changed says nothing either.
    assignment = _Assignment({A: _State(5, 90)})
    assignment.active = False
    for _ in range(3):
        await fetcher._proc_fetch_request(assignment, 111, _Request({A: 5}))
    assert fetcher._fetch_max_wait_ms == 10
