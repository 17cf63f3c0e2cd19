"""The drift windows' close rule, driven as the drift-windows agent drives it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.drift.windows import PendingWindows, judged_until

W = 2.0
T0 = 1_796_281_600.0  # a window start


def _replay(timestamps: list[float]) -> tuple[list[float], dict[float, int], int]:
    """Feed counts records through the rule as the agent does (closing a window marks it
    judged, as the monitor's state does); returns the closed windows in order, the
    records added per window, and how many were left out as late."""
    windows = PendingWindows(W)
    state: dict[str, Any] = {}
    closed: list[float] = []
    added: dict[float, int] = {}
    late = 0
    for timestamp in timestamps:
        step = windows.step(state, timestamp)
        if step.late:
            late += 1
            continue
        for start in step.close:
            closed.append(start)
            state["monitor"] = {"last_window_end": start + W}
        state["pending"] = list(step.pending)
        added[step.start] = added.get(step.start, 0) + 1
    return closed, added, late


def test_a_window_closes_once_counts_come_a_full_window_after_its_end() -> None:
    windows = PendingWindows(W)
    first = windows.step({}, T0 + 0.5)
    assert (first.start, first.close, first.pending) == (T0, (), (T0,))
    # The next window's counts do not close it: the last counts of another worker's
    # collector may still be on their way.
    state = {"pending": list(first.pending)}
    second = windows.step(state, T0 + W + 1.9)
    assert second.close == () and second.pending == (T0, T0 + W)
    state = {"pending": list(second.pending)}
    third = windows.step(state, T0 + 2 * W)
    assert third.close == (T0,) and third.pending == (T0 + W, T0 + 2 * W)


def test_a_gap_in_traffic_closes_every_window_left_open_oldest_first() -> None:
    step = PendingWindows(W).step({"pending": [T0 + W, T0]}, T0 + 60)
    assert step.close == (T0, T0 + W) and step.pending == (T0 + 60,)


def test_counts_of_a_judged_window_are_late_and_change_nothing() -> None:
    state = {"pending": [T0 + 2 * W], "monitor": {"last_window_end": T0 + W}}
    step = PendingWindows(W).step(state, T0 + 0.3)
    assert step.late and step.close == () and step.pending == (T0 + 2 * W,)
    # The window right after the judged one is still open for counts.
    assert not PendingWindows(W).step(state, T0 + W).late


def test_counts_of_an_older_open_window_are_added_without_closing_it() -> None:
    step = PendingWindows(W).step({"pending": [T0, T0 + W]}, T0 + 0.1)
    assert not step.late and step.close == () and step.pending == (T0, T0 + W)


@pytest.mark.parametrize(
    ("state", "closes"),
    [
        ({"pending": "not a list", "monitor": "not an object"}, ()),
        ({"pending": [True, None, "x", T0], "monitor": {"last_window_end": True}}, (T0,)),
        ({"open_start": T0}, (T0,)),  # the state's older form
    ],
)
def test_a_state_of_another_shape_keeps_only_its_numbers(
    state: dict[str, Any], closes: tuple[float, ...]
) -> None:
    step = PendingWindows(W).step(state, T0 + 3 * W)
    assert not step.late and step.close == closes and step.pending == (T0 + 3 * W,)


def test_judged_until_reads_only_a_number() -> None:
    assert judged_until({}) == float("-inf")
    assert judged_until({"monitor": {"last_window_end": 10}}) == 10.0
    assert judged_until({"monitor": {"last_window_end": "10"}}) == float("-inf")


def test_a_window_length_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_s"):
        PendingWindows(0)


# Timestamps as counts records bring them: mostly moving on, sometimes a little behind
# (another worker's collector), sometimes a gap, sometimes read again from far back.
_moves = st.lists(
    st.one_of(
        st.floats(min_value=0.0, max_value=0.5),
        st.floats(min_value=-1.5, max_value=0.0),
        st.floats(min_value=5.0, max_value=30.0),
        st.floats(min_value=-20.0, max_value=-5.0),
    ),
    min_size=1,
    max_size=200,
)


@given(_moves)
def test_every_window_is_closed_once_in_order_and_late_counts_only_for_judged_ones(
    moves: list[float],
) -> None:
    timestamps: list[float] = []
    at = T0
    for move in moves:
        at = max(T0, at + move)
        timestamps.append(at)
    closed, added, late = _replay(timestamps)
    assert closed == sorted(set(closed)), "a window closed twice or out of order"
    assert all(start in added for start in closed), "a window closed without counts"
    assert late + sum(added.values()) == len(timestamps), "a record neither added nor late"
    # A window closes only after counts a full window past its end arrived.
    latest_start = PendingWindows(W).window_start(max(timestamps))
    assert all(start + 2 * W <= latest_start for start in closed)


@given(_moves)
def test_in_order_counts_leave_at_most_two_windows_open(moves: list[float]) -> None:
    """What bounds the table's memory: the window being filled and the one before it
    (open until counts a full window after its end arrive)."""
    windows = PendingWindows(W)
    state: dict[str, Any] = {}
    at = T0
    for move in moves:
        at += abs(move)
        step = windows.step(state, at)
        assert not step.late
        if step.close:
            state["monitor"] = {"last_window_end": step.close[-1] + W}
        state["pending"] = list(step.pending)
        assert len(step.pending) <= 2
