"""The rollout scenario, shortened: a challenger's shadow, canary and decision, hands off.

The full runs (five canary steps of 200 labelled outcomes each) are
``phoenix-stream simulate --scenario rollout --challenger better|equal|worse``; their
figures are in the README.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.settings import Settings
from phoenix_stream.tools.scenarios.models import Challenger
from phoenix_stream.tools.scenarios.rollout import RolloutConfig, check_targets, run_rollout


@pytest.mark.parametrize("challenger", ["better", "worse", "equal"])
async def test_the_controller_decides_on_evidence_alone(
    challenger: Challenger, services: ServiceAddresses, tmp_path: Path
) -> None:
    settings = Settings(
        kafka_url=services.kafka_url,
        redis_url=services.redis_url,
        postgres_dsn=services.postgres_dsn,
        topic_partitions=2,
    )
    config = RolloutConfig(
        challenger=challenger,
        rate=400.0,
        entities=5_000,
        feedback_delay_s=1.0,
        timeout_s=240.0,
        steps=(0.1, 0.5),
        step_labels=50,
    )
    result = await run_rollout(settings, config, tmp_path)
    assert check_targets(result) == {
        "decision": True,
        "no_failed_requests": True,
        "within_10_minutes": True,
    }, result
    strategies = [step["strategy"] for step in result["steps"]]
    assert strategies[:3] == ["single", "shadow", "shadow"]  # the operator's three changes
    assert strategies[-1] == "single"  # the controller's decision
    decided = result["steps"][-1]
    assert decided["actor"] == "rollout-controller"
    if challenger == "better":
        assert strategies[3:-1] == ["canary", "canary"]  # both steps, then promoted
        assert result["challenger_metric"] > result["champion_metric"]
    else:
        assert "canary" not in strategies  # never served: retired from the shadow
        assert decided["reason"].startswith(result["decision"])
    assert result["deploy_propagation_ms"]["changes"] == len(result["steps"])
