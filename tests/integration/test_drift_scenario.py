"""The drift scenario, shortened: a shift detected, a retrained version promoted, no person.

The full runs (32 null windows of 5 s, then the shift) are
``phoenix-stream simulate --scenario drift --shift sudden|gradual``; their figures are in
the README.
"""

from __future__ import annotations

from pathlib import Path

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.settings import Settings
from phoenix_stream.tools.scenarios.drift import DriftConfig, run_drift


async def test_a_sudden_shift_is_detected_and_healed_without_a_person(
    services: ServiceAddresses, tmp_path: Path
) -> None:
    settings = Settings(
        kafka_url=services.kafka_url,
        redis_url=services.redis_url,
        postgres_dsn=services.postgres_dsn,
        topic_partitions=2,
    )
    config = DriftConfig(
        shift="sudden",
        rate=400.0,
        entities=5_000,
        window_s=3.0,
        null_windows=6,
        healed_windows=2,
        periodic_windows=4,
        step_labels=30,
        timeout_s=240.0,
    )
    result = await run_drift(settings, config, tmp_path)
    assert result["false_alarms"] == 0, result
    assert result["windows_to_detect"] is not None and result["windows_to_detect"] <= 2, result
    assert result["retrain_jobs"] == result["alarms"] >= 1, result
    assert result["healed_version"] not in (None, "1"), result  # a retrained version serves
    assert result["failed_requests"] == 0, result
    assert result["accuracy_healed"] > result["accuracy_no_retrain"], result
