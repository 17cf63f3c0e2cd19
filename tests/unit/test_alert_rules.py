"""The Prometheus alert rules are valid, tested, documented and query only our metrics.

``promtool`` (Debian's ``prometheus`` package; CI installs it) checks the rule file and
runs its unit tests, ``deploy/prometheus/tests/phoenix-alerts.test.yml``. The rest reads
both files: every rule carries what an operator needs, every alert has a firing and a
quiet case, every metric exists, and every runbook link lands on a README heading.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, generate_latest

from phoenix_stream import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "phoenix-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "phoenix-alerts.test.yml"
README = ROOT / "README.md"
SEVERITIES = {"critical", "warning", "info"}
# promtool evaluates every case of the file in one process: seconds here, bounded anyway.
PROMTOOL_TIMEOUT_S = 120


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool with ``args``; a missing promtool fails the test, it never skips."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: install Debian's prometheus package "
            "(apt-get install prometheus), as CI does"
        )
    return subprocess.run(
        [path, *args], capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S, check=False
    )


def rules() -> list[dict[str, Any]]:
    """The alerting rules of the rule file, in order."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    assert [group["name"] for group in groups] == ["phoenix-stream"]
    return list(groups[0]["rules"])


def alert_cases() -> list[dict[str, Any]]:
    """Every alert_rule_test case of the test file."""
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    return [case for test in tests for case in test.get("alert_rule_test", [])]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of ``markdown`` (a repeated one gets -1, -2)."""
    anchors: set[str] = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = re.match(r"#{1,6} +(.+?) *#* *$", line)
        if in_code or heading is None:
            continue
        text = re.sub(r"[^\w\- ]", "", heading[1].lower()).replace(" ", "-")
        anchor, n = text, 0
        while anchor in anchors:
            n += 1
            anchor = f"{text}-{n}"
        anchors.add(anchor)
    return anchors


def test_promtool_accepts_the_rule_file() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_says_how_bad_what_and_where_to_look() -> None:
    names = [rule.get("alert") for rule in rules()]
    assert len(set(names)) == len(names), f"an alert name is used twice: {names}"
    for rule in rules():
        name = rule.get("alert")
        assert name is not None and re.fullmatch(r"Phoenix[A-Z][A-Za-z0-9]+", name), rule
        assert rule.get("expr"), name
        assert "for" in rule, f"{name}: say `for: 0m` when it fires at once, and why"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert annotations.get(key), f"{name}: no {key}"
        assert annotations["runbook_url"] == f"README.md#{name.lower()}", name


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    alerts = {rule["alert"] for rule in rules()}
    firing: set[str] = set()
    annotated: set[str] = set()
    quiet: set[str] = set()
    for case in alert_cases():
        expected = case.get("exp_alerts") or []
        if expected:
            firing.add(case["alertname"])
        else:
            quiet.add(case["alertname"])
        if any("exp_annotations" in alert for alert in expected):
            annotated.add(case["alertname"])
    tested = firing | quiet
    assert tested <= alerts, f"tests of alerts the rules do not have: {tested - alerts}"
    assert alerts <= firing, f"never seen firing: {sorted(alerts - firing)}"
    assert alerts <= annotated, f"annotations never checked: {sorted(alerts - annotated)}"
    assert alerts <= quiet, f"never seen quiet: {sorted(alerts - quiet)}"


def test_every_queried_metric_is_exported() -> None:
    # A labelled metric has no samples until used, so names come from the families.
    # _created: the creation time prometheus-client exposes beside each counter and
    # histogram, which the rare-event rules read (the rule file's header says why).
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    exported = {
        family.name + suffix
        for family in metrics.REGISTRY.collect()
        for suffix in suffixes[family.type]
    }
    for rule in rules():
        for name in re.findall(r"phoenix_[a-z_]+", rule["expr"]):
            assert name in exported, f"{rule['alert']}: {name} is not exported"


def test_counters_expose_their_creation_time() -> None:
    registry = CollectorRegistry()
    counter = Counter("phoenix_example_total", "An example.", ["model"], registry=registry)
    counter.labels("credit-risk").inc()
    text = generate_latest(registry).decode()
    assert re.search(r'^phoenix_example_created\{model="credit-risk"\} \S+$', text, re.M), text


def test_every_runbook_link_lands_on_a_readme_heading() -> None:
    anchors = github_anchors(README.read_text(encoding="utf-8"))
    missing = sorted(
        url
        for url in (rule["annotations"]["runbook_url"] for rule in rules())
        if url.removeprefix("README.md#") not in anchors
    )
    assert not missing, f"no README heading for {missing}"
