"""Commands that make or read traffic: the simulator and its scenarios, the demo, bench, tail."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

import click

from phoenix_stream.commands.base import broker_option, command, path_option, write_json
from phoenix_stream.settings import Settings
from phoenix_stream.tools.tail import TOPICS as TAIL_TOPICS


@command(
    click.option(
        "--scenario",
        type=click.Choice(["traffic", "rollout", "drift"]),
        default="traffic",
        show_default=True,
        help="traffic: requests only; rollout: a challenger's shadow, canary and decision; "
        "drift: a shift, its detection, retraining and healing.",
    ),
    click.option(
        "--shift",
        type=click.Choice(["sudden", "gradual"]),
        default="sudden",
        show_default=True,
        help="drift: the shift comes at once or ramps in over 5 windows.",
    ),
    click.option(
        "--challenger",
        type=click.Choice(["better", "equal", "worse"]),
        default="better",
        show_default=True,
        help="rollout: how good the challenger truly is.",
    ),
    path_option("--json", "json_path", "rollout, drift: write the result to this JSON file."),
    click.option(
        "--rate",
        type=float,
        default=None,
        help="Requests per second (traffic: 200, rollout: 400).",
    ),
    click.option("--duration", type=float, default=10.0, show_default=True, help="Seconds."),
    click.option(
        "--entities",
        type=int,
        default=None,
        help="Entity ids are drawn from the first N seeded ones (traffic: 100000, rollout: 20000).",
    ),
    click.option(
        "--malformed",
        type=float,
        default=0.0,
        show_default=True,
        help="Share of malformed records (0..1), to show dead letters.",
    ),
    click.option(
        "--unknown-entities",
        type=float,
        default=0.0,
        show_default=True,
        help="Share of requests for entities that were never seeded.",
    ),
    click.option(
        "--batch",
        type=int,
        default=1,
        show_default=True,
        help="Requests per Kafka record (1 = single-request records).",
    ),
    click.option("--seed", "random_seed", type=int, default=1, show_default=True),
)
async def simulate(
    settings: Settings,
    scenario: str,
    shift: str,
    challenger: str,
    json_path: Path | None,
    rate: float | None,
    duration: float,
    entities: int | None,
    malformed: float,
    unknown_entities: float,
    batch: int,
    random_seed: int,
) -> None:
    """Produce realistic requests at a steady rate, or run a whole scenario (--scenario)."""
    if scenario == "drift":
        from phoenix_stream.tools.scenarios import drift as drift_scenario

        drift_config = drift_scenario.DriftConfig(
            shift=cast(Any, shift),
            rate=rate or 400.0,
            entities=entities or 20_000,
            seed=random_seed,
        )
        outcome = await drift_scenario.run_scenario(settings, drift_config)
        click.echo(drift_scenario.format_result(outcome))
        click.echo(f"targets: {outcome['targets']}")
        await write_json(json_path, outcome)
        if not all(outcome["targets"].values()):
            raise SystemExit(1)
        return
    if scenario == "rollout":
        from phoenix_stream.tools.scenarios.rollout import (
            RolloutConfig,
            format_result,
            run_scenario,
        )

        config = RolloutConfig(
            challenger=cast(Any, challenger),
            rate=rate or 400.0,
            entities=entities or 20_000,
            seed=random_seed,
        )
        result = await run_scenario(settings, config)
        click.echo(format_result(result))
        click.echo(f"targets: {result['targets']}")
        await write_json(json_path, result)
        if not all(result["targets"].values()):
            raise SystemExit(1)
        return
    from phoenix_stream.tools.simulator import SimulationConfig, run_simulation

    config_traffic = SimulationConfig(
        rate=rate or 200.0,
        duration_s=duration,
        entities=entities or 100_000,
        malformed_share=malformed,
        unknown_share=unknown_entities,
        batch=batch,
        seed=random_seed,
    )
    report = await run_simulation(settings, config_traffic)
    click.echo(json.dumps(report.as_dict(), indent=2))


@command(
    click.option(
        "--duration",
        type=float,
        default=30.0,
        show_default=True,
        help="Seconds of simulated traffic.",
    ),
    click.option(
        "--rate", type=float, default=300.0, show_default=True, help="Requests per second."
    ),
    click.option("--entities", type=int, default=100_000, show_default=True),
)
async def demo(settings: Settings, duration: float, rate: float, entities: int) -> None:
    """Start everything, stream requests for a while, show progress and a summary."""
    from phoenix_stream.tools.demo import DemoConfig, run_demo

    code = await run_demo(settings, DemoConfig(duration_s=duration, rate=rate, entities=entities))
    sys.exit(code)


@command(
    path_option("--json", "json_path", "Write the figures to this JSON file."),
    click.option(
        "--requests",
        "n_requests",
        type=int,
        default=60_000,
        show_default=True,
        help="Requests per throughput phase.",
    ),
    broker_option("Embedded broker to start (unless every PHOENIX_*_URL is set): tansu or kafka."),
)
async def bench(settings: Settings, json_path: Path | None, n_requests: int, broker: str) -> None:
    """Measure baseline, Faust floor, pipeline, batch pipeline, latency and HTTP."""
    from phoenix_stream.tools.bench.runner import BenchConfig, run_bench

    config = BenchConfig(requests=n_requests, broker=broker)
    result: dict[str, Any] = await run_bench(settings, config)
    await write_json(json_path, result)


@command(
    click.argument("topic", type=click.Choice(TAIL_TOPICS)),
    click.option(
        "--from-beginning",
        is_flag=True,
        default=False,
        help="Every record the topic holds, not only those from now on.",
    ),
    click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after N records."),
    click.option(
        "--idle",
        "idle_s",
        type=click.FloatRange(min=0.0, min_open=True),
        default=None,
        help="Stop after this many seconds without a record.",
    ),
)
async def tail(
    settings: Settings, topic: str, from_beginning: bool, limit: int | None, idle_s: float | None
) -> None:
    """Print TOPIC's records as they arrive, one JSON line each (Ctrl-C ends it)."""
    from phoenix_stream.tools.tail import TailOptions
    from phoenix_stream.tools.tail import tail as tail_topic

    options = TailOptions(from_beginning=from_beginning, limit=limit, idle_s=idle_s)
    await tail_topic(settings, topic, options, lambda line: click.echo(line))
