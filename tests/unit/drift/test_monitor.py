"""The monitor's persistence, alarm and re-arm logic, its state, and the report's wire form."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix_stream.drift.histograms import SCORE, Bins
from phoenix_stream.drift.monitor import DriftMonitor, DriftRule, trigger_id
from phoenix_stream.drift.report import DriftReport, decode_report, parse_report
from phoenix_stream.exceptions import ValidationError

_RNG = np.random.default_rng(0)
REFERENCE = {"x": _RNG.standard_normal(5_000), "y": _RNG.exponential(1.0, 5_000)}
SCORES = _RNG.uniform(0.0, 1.0, 5_000)
MINUTE = 60.0
BINS = DriftMonitor.for_model("credit", "3", REFERENCE, SCORES.tolist()).bins


def make_monitor(rule: DriftRule | None = None) -> DriftMonitor:
    return DriftMonitor("credit", "3", BINS, rule)


def window(kind: str, seed: int, n: int = 1_000) -> np.ndarray:
    """Counts (3, B): "null" from the reference's distribution, "drift" with x shifted 1 sd."""
    rng = np.random.default_rng(seed)
    shift = {"null": 0.0, "drift": 1.0}[kind]
    rows = np.column_stack(
        [rng.normal(shift, 1.0, n), rng.exponential(1.0, n), rng.uniform(0.0, 1.0, n)]
    )
    return BINS.count(rows)


def close(monitor: DriftMonitor, kinds: list[str], start: int = 0) -> list[DriftReport]:
    reports = []
    for i, kind in enumerate(kinds, start):
        counts = window("null", i, n=100) if kind == "small" else window(kind, i)
        reports.append(monitor.close_window(counts, i * MINUTE, (i + 1) * MINUTE))
    return reports


def test_the_alarm_is_raised_once_per_trigger_and_re_arms_after_a_clean_window() -> None:
    monitor = make_monitor()
    kinds = ["null", "drift", "drift", "drift", "drift", "null", "drift", "drift", "drift"]
    reports = close(monitor, kinds)
    assert [r.verdict for r in reports] == [k.replace("null", "no_drift") for k in kinds]
    assert [r.consecutive for r in reports] == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    alarms = [False, False, True, False, False, False, False, True, False]
    assert [r.alarm for r in reports] == alarms
    assert [r.trigger_id for r in reports if r.alarm] == ["credit:3:120000", "credit:3:420000"]
    assert all(r.trigger_id is None for r in reports if not r.alarm)
    assert reports[2].drifted_features() == ["x"]


def test_a_window_too_small_to_judge_neither_extends_nor_breaks_a_run() -> None:
    monitor = make_monitor()
    reports = close(monitor, ["drift", "small", "drift", "small", "null", "drift"])
    assert [r.verdict for r in reports] == [
        "drift", "insufficient", "drift", "insufficient", "no_drift", "drift"
    ]  # fmt: skip
    assert [r.consecutive for r in reports] == [1, 1, 2, 2, 0, 1]
    assert [r.alarm for r in reports] == [False, False, True, False, False, False]
    assert reports[1].n == 100


def test_persistence_one_alarms_on_the_first_drifted_window_only() -> None:
    reports = close(make_monitor(DriftRule(persistence=1)), ["drift", "drift", "null", "drift"])
    assert [r.alarm for r in reports] == [True, False, False, True]


def test_trigger_ids_agree_across_workers_and_replays() -> None:
    first = close(make_monitor(), ["drift", "drift", "drift"], start=7)
    second = close(make_monitor(), ["drift", "drift", "drift"], start=7)
    assert [r.trigger_id for r in first] == [r.trigger_id for r in second]
    assert first[1].trigger_id == trigger_id("credit", "3", 8 * MINUTE) == "credit:3:480000"


def test_state_round_trips_through_json_and_resumes_the_run() -> None:
    monitor = make_monitor()
    close(monitor, ["null", "drift"])
    state = orjson.loads(orjson.dumps(monitor.state()))
    assert state == {"model": "credit", "version": "3", "consecutive": 1, "last_window_end": 120.0}
    resumed = DriftMonitor.from_state(state, monitor.bins)
    assert resumed.consecutive == 1 and resumed.rule == DriftRule()
    # The drifted window before the restart counts: the next one alarms.
    assert close(resumed, ["drift"], start=2)[0].alarm


def test_a_window_already_closed_is_refused_so_a_replay_cannot_double_count() -> None:
    monitor = make_monitor()
    close(monitor, ["drift"], start=5)
    assert monitor.already_closed(5 * MINUTE) and not monitor.already_closed(6 * MINUTE)
    with pytest.raises(ValueError, match="before the last closed"):
        monitor.close_window(window("drift", 5), 5 * MINUTE, 6 * MINUTE)
    assert monitor.consecutive == 1
    with pytest.raises(ValueError, match="must be after"):
        monitor.close_window(window("drift", 6), 7 * MINUTE, 7 * MINUTE)


def test_construction_checks() -> None:
    monitor = make_monitor()
    assert monitor.bins.names == ("x", "y", SCORE)
    with pytest.raises(ValueError, match="reserved"):
        DriftMonitor.for_model("m", "1", {SCORE: [1.0]}, [1.0])
    with pytest.raises(ValueError, match="the rule says 50"):
        DriftMonitor("m", "1", Bins.from_reference(REFERENCE, bins=10))
    with pytest.raises(ValueError, match="identifiers"):
        DriftMonitor("../m", "1", monitor.bins)
    with pytest.raises(ValueError, match="persistence"):
        DriftRule(persistence=0)
    with pytest.raises(ValueError, match="alpha"):
        DriftRule(alpha=0.0)
    with pytest.raises(ValueError, match=r"\(3, B\) counts"):
        monitor.close_window(np.zeros((2, monitor.bins.width), dtype=np.int64), 0.0, 1.0)


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ([], "$"),
        ({"model": "a/b", "version": "1", "consecutive": 0}, "model"),
        ({"model": "m", "version": 1, "consecutive": 0}, "version"),
        ({"model": "m", "version": "1", "consecutive": -1}, "consecutive"),
        ({"model": "m", "version": "1", "consecutive": True}, "consecutive"),
        (
            {"model": "m", "version": "1", "consecutive": 0, "last_window_end": "x"},
            "last_window_end",
        ),
        (
            {"model": "m", "version": "1", "consecutive": 0, "last_window_end": 1e300},
            "last_window_end",
        ),
    ],
)
def test_a_bad_state_names_its_field(state: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DriftMonitor.from_state(state, BINS)
    assert caught.value.field == field


JSON = st.recursive(
    # orjson writes integers of at most 64 bits.
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(state=JSON)
def test_any_state_gives_a_monitor_or_a_validation_error(state: Any) -> None:
    try:
        DriftMonitor.from_state(state, BINS)
    except ValidationError:
        pass


# The report: round trip and rejection of bad input.


def a_report() -> DriftReport:
    return close(make_monitor(), ["drift", "drift"])[1]


def test_a_report_round_trips_through_its_bytes() -> None:
    report = a_report()
    assert report.alarm and report.n == 1_000
    assert decode_report(report.encode()) == report
    plain = orjson.loads(report.encode())
    assert plain["rule"] == {
        "alpha": 0.05, "correction": "bonferroni", "effect_floor": 0.1,
        "min_window": 500, "persistence": 2, "bins": 50,
    }  # fmt: skip
    assert set(plain["features"]) == {"x", "y", SCORE}
    assert plain["features"]["x"]["drifted"] is True


def mutated(path: str, value: Any) -> bytes:
    data = a_report().as_dict()
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    target[last] = value
    return orjson.dumps(data)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("model", "", "model"),
        ("version", None, "version"),
        ("window_start", -1.0, "window_start"),
        ("window_end", 1.0, "window_end"),
        ("n", 1.5, "n"),
        ("n", -1, "n"),
        ("verdict", "maybe", "verdict"),
        ("consecutive", "2", "consecutive"),
        ("alarm", 1, "alarm"),
        ("trigger_id", None, "trigger_id"),
        ("features", [], "features"),
        ("features.x", 0.3, "features.x"),
        ("features.x.p_value", 1.5, "features.x.p_value"),
        ("features.x.statistic", -0.1, "features.x.statistic"),
        ("features.x.effect", None, "features.x.effect"),
        ("features.x.drifted", "yes", "features.x.drifted"),
        ("rule", None, "rule"),
        ("rule.alpha", 0, "rule.alpha"),
        ("rule.correction", "holm", "rule.correction"),
        ("rule.persistence", 0, "rule.persistence"),
        ("rule.extra", 1, "rule"),
    ],
)
def test_a_bad_report_names_its_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        decode_report(mutated(path, value))
    assert caught.value.field == field


def test_non_finite_numbers_and_non_json_are_named() -> None:
    encoded = a_report().encode()
    raw = encoded.replace(b'"window_start":60.0', b'"window_start":NaN')
    assert raw != encoded
    with pytest.raises(ValidationError) as caught:
        decode_report(raw)
    assert caught.value.field == "window_start"
    for bad in (b"", b"{", b"[]", b"\xff", None):
        with pytest.raises(ValidationError) as caught:
            decode_report(bad)
        assert caught.value.field == "$"


@settings(max_examples=300, deadline=None)
@given(data=JSON)
def test_arbitrary_json_gives_a_report_or_a_validation_error(data: Any) -> None:
    try:
        parse_report(data)
        decode_report(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))
    except ValidationError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    path=st.sampled_from(
        ["model", "n", "window_end", "alarm", "trigger_id", "features.x", "features.y.p_value",
         "features.__score__.effect", "rule", "rule.bins", "rule.effect_floor", "verdict"]
    ),
    value=JSON,
)  # fmt: skip
def test_one_arbitrary_field_gives_a_report_or_a_validation_error(path: str, value: Any) -> None:
    try:
        report = decode_report(mutated(path, value))
    except ValidationError:
        return
    assert decode_report(report.encode()) == report


@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_give_a_validation_error(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        decode_report(raw)
