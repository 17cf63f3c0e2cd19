"""Lag arithmetic and the broker trust decision (streaming/lag.py), without a broker."""

from __future__ import annotations

import base64
import uuid

from hypothesis import given
from hypothesis import strategies as st

from phoenix_stream.settings import LAG_TRUSTS
from phoenix_stream.streaming.lag import LagReport, group_lag, partition_lag, untrusted_reason

offsets = st.integers(min_value=0, max_value=2**62)


@given(log_start=offsets, ahead=offsets, committed_at=st.floats(0, 1))
def test_lag_is_end_minus_committed_within_the_log(
    log_start: int, ahead: int, committed_at: float
) -> None:
    end = log_start + ahead
    committed = log_start + int(ahead * committed_at)
    assert partition_lag(end, committed, log_start) == end - committed


@given(log_start=offsets, ahead=offsets)
def test_no_committed_offset_is_the_whole_partition_from_the_log_start(
    log_start: int, ahead: int
) -> None:
    end = log_start + ahead
    assert partition_lag(end, None, log_start) == ahead


@given(log_start=offsets, ahead=offsets, behind=st.integers(1, 2**40))
def test_a_commit_below_the_log_start_reads_from_the_log_start(
    log_start: int, ahead: int, behind: int
) -> None:
    # Retention removed records the group never read: its reset goes to the earliest one.
    end = log_start + ahead
    assert partition_lag(end, log_start - behind, log_start) == ahead


@given(end=offsets, committed=st.one_of(st.none(), st.integers(-1, 2**62)), log_start=offsets)
def test_lag_is_never_negative_and_never_more_than_the_log(
    end: int, committed: int | None, log_start: int
) -> None:
    lag = partition_lag(end, committed, log_start)
    assert 0 <= lag <= max(0, end - log_start)


@given(end=offsets, log_start=offsets, a=offsets, b=offsets)
def test_a_later_commit_never_has_more_lag(end: int, log_start: int, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert partition_lag(end, high, log_start) <= partition_lag(end, low, log_start)


def test_a_compacted_topic_counts_offsets_not_the_records_left() -> None:
    # Offsets 0..9 written, the cleaner kept only 7, 8 and 9 (their keys' latest): the
    # group committed 2, so 8 offsets lie ahead though only 3 records do. The lag is an
    # upper bound of the records to read, as Kafka's own tools count it.
    assert partition_lag(end=10, committed=2, log_start=0) == 8


def test_group_lag_per_topic_and_partition() -> None:
    ends = {("t.requests", 1): 7, ("t.requests", 0): 5, ("t.feedback", 0): 3}
    committed: dict[tuple[str, int], int | None] = {("t.requests", 0): 5, ("t.requests", 1): 2}
    lag = group_lag(ends, committed, {("t.feedback", 0): 1})
    assert lag == {"t.feedback": {0: 2}, "t.requests": {0: 0, 1: 5}}


def test_kafka_cluster_ids_are_trusted_under_auto() -> None:
    for _ in range(50):
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        assert untrusted_reason("auto", cluster_id) is None
    assert untrusted_reason("auto", "7r5dYExQQ2Sf59lilk0xVQ") is None  # a Kafka 4.1 node here


@given(cluster_id=st.one_of(st.none(), st.text(max_size=40)))
def test_anything_else_is_untrusted_under_auto_and_says_why(cluster_id: str | None) -> None:
    reason = untrusted_reason("auto", cluster_id)
    looks_like_kafka = (
        cluster_id is not None
        and len(cluster_id) == 22
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in cluster_id)
    )
    assert (reason is None) == looks_like_kafka
    if reason is not None:
        assert "cannot be trusted" in reason and "PHOENIX_LAG_TRUST" in reason


def test_tansu_is_untrusted_and_the_settings_override_auto() -> None:
    reason = untrusted_reason("auto", "tansu_cluster")
    assert reason is not None and "'tansu_cluster'" in reason
    assert untrusted_reason("trusted", "tansu_cluster") is None
    assert untrusted_reason("untrusted", "7r5dYExQQ2Sf59lilk0xVQ") is not None
    assert set(LAG_TRUSTS) == {"auto", "trusted", "untrusted"}


def test_report_json_has_string_partitions_and_the_age() -> None:
    report = LagReport({"t.requests": {0: 4}}, None, sampled_at=100.0)
    assert report.to_json(now=102.5) == {
        "lag": {"t.requests": {"0": 4}},
        "lag_reason": None,
        "lag_age_s": 2.5,
    }
    never = LagReport(None, "not sampled yet", None).to_json(now=5.0)
    assert never == {"lag": None, "lag_reason": "not sampled yet", "lag_age_s": None}
