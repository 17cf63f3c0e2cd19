"""Routing is deterministic, sticky per entity and honours the challenger share."""

from __future__ import annotations

import subprocess
import sys

import pytest

from phoenix_stream.serving.router import CHALLENGER, CHAMPION, Deployment, bucket, route
from phoenix_stream.settings import Settings


def test_single_strategy_always_champion() -> None:
    deployment = Deployment("m", "1", "2", "single", 0.5)
    assert {route(deployment, f"e{i}").variant for i in range(200)} == {CHAMPION}


def test_ab_share_is_respected_and_sticky() -> None:
    deployment = Deployment("m", "1", "2", "ab", 0.25)
    decisions = [route(deployment, f"e{i}") for i in range(20_000)]
    share = sum(d.variant == CHALLENGER for d in decisions) / len(decisions)
    assert 0.23 < share < 0.27
    assert all(d.version == ("2" if d.variant == CHALLENGER else "1") for d in decisions)
    assert [route(deployment, f"e{i}") for i in range(100)] == decisions[:100]


def test_shadow_serves_champion_and_shadows_challenger() -> None:
    decision = route(Deployment("m", "1", "2", "shadow", 0.0), "e1")
    assert (decision.variant, decision.version, decision.shadow_version) == (CHAMPION, "1", "2")


def test_no_challenger_means_champion() -> None:
    settings = Settings(challenger_version="", strategy="ab", challenger_share=1.0)
    deployment = Deployment.from_settings(settings)
    assert deployment.strategy == "single"
    assert route(deployment, "anyone").variant == CHAMPION


def test_bucket_is_stable_across_processes() -> None:
    # Python's hash() is salted per process; the router's bucket must not be.
    code = "from phoenix_stream.serving.router import bucket; print(repr(bucket('m', 'e42')))"
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    )
    assert float(other.stdout) == bucket("m", "e42")
    assert 0.0 <= bucket("m", "e42") < 1.0
    assert bucket("m", "e42") != bucket("other", "e42")


@pytest.mark.parametrize("pattern", ["c{:06d}", "user-{}", "{}", "acct/{:x}/eu"])
def test_buckets_are_uniform_also_for_sequential_ids(pattern: str) -> None:
    n = 20_000
    for share in (0.01, 0.1, 0.3, 0.5):
        below = sum(bucket("credit-risk", pattern.format(i)) < share for i in range(n)) / n
        sd = (share * (1 - share) / n) ** 0.5
        assert abs(below - share) < 4 * sd, (pattern, share, below)
