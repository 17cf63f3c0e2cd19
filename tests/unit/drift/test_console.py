"""``phoenix-stream drift``'s table and its reading of the worker's answer."""

from __future__ import annotations

import orjson
import pytest

from phoenix_stream.drift.console import parse_answer, render_reports
from phoenix_stream.drift.report import DriftReport, FeatureDrift
from phoenix_stream.lifecycle.admin_client import AdminError

RULE = {
    "alpha": 0.05,
    "correction": "bonferroni",
    "effect_floor": 0.1,
    "min_window": 200,
    "persistence": 2,
    "bins": 50,
}
DRIFTED = DriftReport(
    model="credit",
    version="v2",
    window_start=1_700_000_000.0,
    window_end=1_700_000_300.0,
    n=1000,
    features={
        "__score__": FeatureDrift(0.12, 2e-11, 0.12, True),
        "income": FeatureDrift(0.03, 0.41, 0.03, False),
        "age": FeatureDrift(0.21, 1.5e-30, 0.21, True),
    },
    verdict="drift",
    consecutive=2,
    alarm=True,
    trigger_id="credit:v2:1700000000000",
    rule=RULE,
)
QUIET = DriftReport(
    model="credit",
    version="v2",
    window_start=1_699_999_940.0,
    window_end=1_700_000_000.0,
    n=12,
    features={},
    verdict="insufficient",
    consecutive=0,
    alarm=False,
    trigger_id=None,
    rule=RULE,
)
URL = "http://127.0.0.1:6066/v1/drift/credit"


def test_the_table_shows_each_window_then_its_features_score_last() -> None:
    lines = render_reports("credit", [DRIFTED, QUIET]).splitlines()
    assert lines[0] == "credit: 2 latest drift windows, newest first"
    assert lines[1].split() == [
        "window", "start", "(UTC)", "length", "version", "n", "verdict", "alarm", "consecutive"
    ]  # fmt: skip
    assert lines[2].split() == [
        "2023-11-14", "22:13:20", "+5", "min", "v2", "1000", "drift", "ALARM", "2"
    ]  # fmt: skip
    assert [line.split() for line in lines[3:7]] == [
        ["feature", "D", "p", "drifted"],
        ["age", "0.2100", "1.5e-30", "yes"],
        ["income", "0.0300", "0.41", "no"],
        ["__score__", "0.1200", "2e-11", "yes"],
    ]
    assert lines[7].split() == [
        "2023-11-14", "22:12:20", "+60", "s", "v2", "12", "insufficient", "-", "0"
    ]  # fmt: skip
    assert len(lines) == 8  # no feature table for a window without tests


def test_columns_line_up_under_the_header() -> None:
    header, first = render_reports("credit", [DRIFTED]).splitlines()[1:3]
    for title, value in (("version", "v2"), ("verdict", "drift"), ("alarm", "ALARM")):
        assert header.index(title) == first.index(value)
    assert header.index("consecutive") + len("consecutive") == len(first)


def test_no_reports_says_so() -> None:
    assert render_reports("credit", []) == "credit: no drift reports yet"


def test_the_answer_is_read_as_reports() -> None:
    body = {"model": "credit", "limit": 20, "reports": [
        {**DRIFTED.as_dict(), "recorded_at": 1.7e9}, QUIET.as_dict()
    ]}  # fmt: skip
    assert parse_answer(URL, 200, orjson.dumps(body)) == ([DRIFTED, QUIET], None)


def test_the_warning_of_a_worker_without_drift_agents_is_passed_on() -> None:
    warning = "this worker does not run the drift agents (PHOENIX_AGENTS): ..."
    body = {"model": "credit", "limit": 20, "reports": [], "warning": warning}
    assert parse_answer(URL, 200, orjson.dumps(body)) == ([], warning)


@pytest.mark.parametrize(
    ("status", "raw", "said"),
    [
        (404, b'{"error": "no model \'x\'", "field": "model"}', "404: no model 'x' (model)"),
        (503, b'{"error": "PostgreSQL cannot answer", "field": null}', "503: PostgreSQL"),
        (502, b"<html>bad gateway</html>", "answered 502 with no JSON"),
        (200, b'{"reports": {}}', "without a list of reports"),
        (200, b'{"reports": [{"model": "credit"}]}', "not valid: version"),
    ],
)
def test_a_refusal_or_a_strange_answer_is_an_admin_error(
    status: int, raw: bytes, said: str
) -> None:
    with pytest.raises(AdminError, match=said.replace("(", r"\(").replace(")", r"\)")):
        parse_answer(URL, status, raw)
