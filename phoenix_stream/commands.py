"""The ``phoenix-stream`` commands: one click group, ours, with Faust's worker in it.

Only ``phoenix-stream worker`` builds the Faust app (it is Faust's own worker command, see
``cli.run_worker``); every other command runs on a plain ``asyncio.run`` and imports only
what it uses, so a command that needs no worker answers at once and prints only its own
output: no Faust Worker lifecycle lines, no one-second "Gathering all futures" pause.
Importing this module imports no Faust: Faust picks its event loop when first imported.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn, cast

import click

from phoenix_stream.embedded import (
    BROKER_KINDS,
    SERVICE_NAMES,
    service_status,
    start_services,
    stop_services,
)
from phoenix_stream.exceptions import ConfigError, PhoenixError
from phoenix_stream.redaction import redact
from phoenix_stream.settings import ENV, Settings
from phoenix_stream.tools.tail import TOPICS as TAIL_TOPICS

_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
AsyncCommand = Callable[..., Coroutine[Any, Any, Any]]


def _fail(exc: Exception) -> NoReturn:
    click.echo(f"error: {redact(str(exc))}", err=True)
    raise SystemExit(1)


def _not_service_lifecycle(record: logging.LogRecord) -> bool:
    """False for mode's info lines on a service's life (``[^FeatureStore]: Starting...``)."""
    return record.levelno > logging.INFO or not str(record.msg).startswith("[^")


def _version() -> str:
    try:
        return metadata.version("phoenix-stream")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-l",
    "--loglevel",
    type=click.Choice(_LOG_LEVELS, case_sensitive=False),
    default=None,
    help=(
        "Level of the project's own logs, on stderr (default: PHOENIX_LOG_LEVEL if set, "
        "else info for worker and warning for the other commands)."
    ),
)
@click.version_option(_version(), "--version", prog_name="phoenix-stream")
def cli(loglevel: str | None) -> None:
    """phoenix-stream: real-time ML inference on Faust, with drift detection and healing.

    Configuration comes from PHOENIX_* environment variables (see the README).
    """


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        _fail(exc)


def _log_level(settings: Settings, *, unset: str | None = None) -> str:
    """``-l``, else PHOENIX_LOG_LEVEL, else ``unset`` (when given) or the setting's default.

    Commands other than ``worker`` pass ``unset="warning"``: they print their own output,
    and the info lines of what they start (services, stores) are noise there.
    """
    chosen = click.get_current_context().find_root().params.get("loglevel")
    if chosen:
        return str(chosen).upper()
    if unset is not None and not os.environ.get(ENV["log_level"]):
        return unset.upper()
    return settings.log_level.upper()


def _run(command: AsyncCommand, kwargs: dict[str, Any]) -> None:
    """Run one command to its end on ``asyncio.run``.

    Logs of ``phoenix_stream`` go to stderr at ``--loglevel`` (warning by default), other
    libraries' at warning and above, services' start/stop lines not at all. A
    ``PhoenixError`` ends the command with ``error: ...`` and exit status 1, Ctrl-C with
    130, SIGTERM with 143; on both signals the command unwinds first (workers and services
    it started stop).
    """
    settings = _settings()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_not_service_lifecycle)
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("phoenix_stream").setLevel(_log_level(settings, unset="warning"))
    try:
        asyncio.run(_until_sigterm(command(settings, **kwargs)))
    except PhoenixError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except asyncio.CancelledError:  # SIGTERM
        raise SystemExit(143) from None


def command(*params: Callable[[Any], Any]) -> Callable[[AsyncCommand], click.Command]:
    """Register ``async def name(settings, **options)`` as the command ``name`` (``_`` as
    ``-``), with click ``params`` (arguments and options, in help order)."""

    def register(function: AsyncCommand) -> click.Command:
        @functools.wraps(function)
        def callback(**kwargs: Any) -> None:
            _run(function, kwargs)

        decorated: Any = callback
        for param in reversed(params):
            decorated = param(decorated)
        return cli.command(name=function.__name__.replace("_", "-"))(decorated)

    return register


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a worker: Faust's worker command, with uvloop and -l info (see --help).

    The same as faust -A phoenix_stream.app worker; phoenix-stream worker --help shows
    Faust's options for it.
    """
    from phoenix_stream.cli import run_worker

    settings = _settings()
    run_worker(list(ctx.args), settings, _log_level(settings).lower())


async def _until_sigterm(command: Coroutine[Any, Any, Any]) -> None:
    """Run ``command``; SIGTERM cancels it, as asyncio.run does on Ctrl-C.

    Without this a terminated scenario or demo would leave its workers and embedded
    services running, orphaned: their ``finally`` blocks never ran.
    """
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await command
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


@command(
    click.argument("action", type=click.Choice(["up", "down", "status"])),
    click.argument("names", nargs=-1, type=click.Choice(list(SERVICE_NAMES))),
    click.option(
        "--broker",
        type=click.Choice(list(BROKER_KINDS)),
        default="tansu",
        show_default=True,
        help="With up: Tansu (Python only) or Apache Kafka (KRaft; needs a JDK 17+).",
    ),
    click.option(
        "--brokers",
        type=click.IntRange(1, 9),
        default=1,
        show_default=True,
        help="With up --broker kafka: number of Kafka nodes.",
    ),
)
async def services(
    settings: Settings, action: str, names: tuple[str, ...], broker: str, brokers: int
) -> None:
    """Start, stop or show the embedded broker, Redis and PostgreSQL."""
    chosen = list(names) or list(SERVICE_NAMES)
    state_dir = settings.state_dir
    try:
        if action == "up":
            await asyncio.to_thread(
                start_services, state_dir, chosen, broker=broker, brokers=brokers
            )
        elif action == "down":
            await asyncio.to_thread(stop_services, state_dir, chosen)
    except PhoenixError as exc:
        _fail(exc)
    for status in service_status(state_dir).values():
        state = "running" if status.running else "stopped"
        pid = status.pid if status.pid is not None else "-"
        name = f"{status.name} ({status.kind})" if status.kind else status.name
        click.echo(f"{name:<16} {state:<8} pid {pid!s:<8} {redact(status.url)}")


@command(
    click.option(
        "--models-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Registry folder (default PHOENIX_MODELS_DIR).",
    ),
    click.option("--force/--no-force", default=False, help="Retrain even if models exist."),
)
async def train(settings: Settings, models_dir: Path | None, force: bool) -> None:
    """Train the demo models (champion and challenger) into the registry."""
    from phoenix_stream.training.train import ensure_demo_models, train_demo_models

    target = models_dir or settings.models_dir
    if force:
        paths = await asyncio.to_thread(train_demo_models, target)
        click.echo(f"trained {len(paths)} model versions into {target}")
    else:
        trained = await asyncio.to_thread(ensure_demo_models, target)
        click.echo(f"{'trained' if trained else 'already present'}: demo models in {target}")


@command(
    click.argument("action", type=click.Choice(["list", "register"])),
    click.argument("path", required=False, type=click.Path(path_type=Path)),
    click.option("--name", default=None, help="Model name; must equal the manifest's."),
    click.option("--version", default=None, help="Version; must equal the manifest's."),
    click.option(
        "--models-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Registry folder (default PHOENIX_MODELS_DIR).",
    ),
    click.option(
        "--min-reference-rows",
        type=click.IntRange(min=0),
        default=None,
        help="Smallest reference sample accepted, rows (default what the demo models ship).",
    ),
)
async def registry(
    settings: Settings,
    action: str,
    path: Path | None,
    name: str | None,
    version: str | None,
    models_dir: Path | None,
    min_reference_rows: int | None,
) -> None:
    """List model versions and the roles the worker serves them in, or register a version.

    ``register PATH`` validates and registers a version folder. The roles come from the
    worker at PHOENIX_ADMIN_URL (its open ``GET /v1/deployments``); with no worker there,
    from the PHOENIX_* deployment defaults, and the list says so.
    """
    from phoenix_stream.lifecycle.admin_client import admin_url, served_roles
    from phoenix_stream.serving.registration import MIN_REFERENCE_ROWS, register_version
    from phoenix_stream.serving.registry import MANIFEST_FILE, Manifest, ModelRegistry
    from phoenix_stream.serving.router import Deployment

    target = models_dir or settings.models_dir
    if action == "register":
        if path is None:
            _fail(click.UsageError("register needs the PATH of a version folder"))
        limit = MIN_REFERENCE_ROWS if min_reference_rows is None else min_reference_rows
        manifest = await asyncio.to_thread(
            register_version, path, target, name=name, version=version, min_reference_rows=limit
        )
        click.echo(f"registered {manifest.name} version {manifest.version} in {target}")
        return
    if path is not None or name or version or min_reference_rows is not None:
        _fail(click.UsageError("list takes no PATH, --name, --version or --min-reference-rows"))
    known = ModelRegistry(target)
    if not known.names():
        click.echo(f"no model versions in {target}")
        return
    served = await served_roles(settings)
    if served is None:
        deployment = Deployment.from_settings(settings)
        served = {deployment.model: {deployment.champion: "champion"}}
        if deployment.challenger is not None:
            served[deployment.model][deployment.challenger] = f"challenger ({deployment.strategy})"
        click.echo(
            f"note: no worker answered at {admin_url(settings)}: the roles shown are the "
            "PHOENIX_* deployment defaults",
            err=True,
        )
    click.echo(
        f"{'MODEL':<16} {'VERSION':<8} {'ROLE':<22} {'CREATED_AT':<26} ACCURACY AUC    ALGORITHM"
    )
    for model in known.names():
        for number in known.versions(model):
            try:
                manifest = Manifest.from_file(target / model / number / MANIFEST_FILE)
            except PhoenixError as exc:
                click.echo(f"{model:<16} {number:<8} unreadable: {exc}")
                continue
            role = served.get(model, {}).get(number, "-")
            metrics = manifest.metrics
            accuracy = f"{metrics['accuracy']:.4f}" if "accuracy" in metrics else "-"
            auc = f"{metrics['roc_auc']:.4f}" if "roc_auc" in metrics else "-"
            click.echo(
                f"{model:<16} {number:<8} {role:<22} {manifest.created_at:<26} "
                f"{accuracy:<8} {auc:<6} {manifest.algorithm}"
            )
    for model, roles in sorted(served.items()):
        for number in sorted(set(roles) - set(known.versions(model))):
            click.echo(f"note: {model} {roles[number]} version {number} is not registered")


@command(
    click.option(
        "--entities",
        type=int,
        default=100_000,
        show_default=True,
        help="How many entities to seed.",
    ),
)
async def seed(settings: Settings, entities: int) -> None:
    """Write the demo customer profiles into the Redis feature store."""
    from phoenix_stream.features.seeding import seed_feature_store

    count = await seed_feature_store(settings.redis_url, entities)
    click.echo(f"seeded {count} entities into {redact(settings.redis_url)}")


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
    click.option(
        "--json",
        "json_path",
        type=click.Path(path_type=Path),
        default=None,
        help="rollout, drift: write the result to this JSON file.",
    ),
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
        if json_path is not None:
            await asyncio.to_thread(json_path.write_text, json.dumps(outcome, indent=2) + "\n")
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
        if json_path is not None:
            await asyncio.to_thread(json_path.write_text, json.dumps(result, indent=2) + "\n")
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
    click.option(
        "--json",
        "json_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Write the figures to this JSON file.",
    ),
    click.option(
        "--requests",
        "n_requests",
        type=int,
        default=60_000,
        show_default=True,
        help="Requests per throughput phase.",
    ),
    click.option(
        "--broker",
        type=click.Choice(list(BROKER_KINDS)),
        default="tansu",
        show_default=True,
        help="Embedded broker to start (unless every PHOENIX_*_URL is set): tansu or kafka.",
    ),
)
async def bench(settings: Settings, json_path: Path | None, n_requests: int, broker: str) -> None:
    """Measure baseline, Faust floor, pipeline, batch pipeline, latency and HTTP."""
    from phoenix_stream.tools.bench.runner import BenchConfig, run_bench

    config = BenchConfig(requests=n_requests, broker=broker)
    result: dict[str, Any] = await run_bench(settings, config)
    if json_path is not None:
        await asyncio.to_thread(json_path.write_text, json.dumps(result, indent=2) + "\n")


def _print_decision(answer: dict[str, Any]) -> None:
    d = answer["deployment"]
    challenger = f", challenger {d['challenger']} ({d['strategy']} {d['share']:.0%})"
    click.echo(
        f"{d['model']} generation {d['generation']}: champion {d['champion']}"
        + (challenger if d["challenger"] else "")
        + (
            ""
            if answer.get("serving_here")
            else f"; not serving yet: {answer.get('pending_reason')}"
        )
    )


@command(
    click.argument("model"),
    click.option("--champion", required=True, help="Version served to everyone else."),
    click.option("--challenger", default=None, help="Version to try (none: champion alone)."),
    click.option(
        "--strategy",
        type=click.Choice(["single", "ab", "canary", "shadow"]),
        default=None,
        help="How the challenger is tried (default: shadow with a challenger, else single).",
    ),
    click.option("--share", type=float, default=None, help="Challenger's share of entities, 0..1."),
    click.option("--reason", default="", help="Why: kept in the audit trail."),
)
async def deploy(
    settings: Settings,
    model: str,
    champion: str,
    challenger: str | None,
    strategy: str | None,
    share: float | None,
    reason: str,
) -> None:
    """Change who serves MODEL, through a worker's admin API (PHOENIX_ADMIN_TOKEN)."""
    from phoenix_stream.lifecycle.admin_client import call

    body: dict[str, Any] = {"champion": champion, "reason": reason, "actor": "cli"}
    for key, value in (("challenger", challenger), ("strategy", strategy), ("share", share)):
        if value is not None:
            body[key] = value
    _print_decision(await call(settings, "PUT", f"/v1/deployments/{model}", body))


@command(click.argument("model"), click.option("--reason", default="promoted by hand"))
async def promote(settings: Settings, model: str, reason: str) -> None:
    """Make MODEL's challenger its champion (admin API)."""
    from phoenix_stream.lifecycle.admin_client import call

    body = {"reason": reason, "actor": "cli"}
    _print_decision(await call(settings, "POST", f"/v1/deployments/{model}/promote", body))


@command(click.argument("model"), click.option("--reason", default="rolled back by hand"))
async def rollback(settings: Settings, model: str, reason: str) -> None:
    """Retire MODEL's challenger; the champion serves alone (admin API)."""
    from phoenix_stream.lifecycle.admin_client import call

    body = {"reason": reason, "actor": "cli"}
    _print_decision(await call(settings, "POST", f"/v1/deployments/{model}/rollback", body))


@command(
    click.argument("model"),
    click.option(
        "--reason", default="retrain requested by hand", help="Why: kept in the manifest."
    ),
    click.option(
        "--replace-challenger",
        is_flag=True,
        default=False,
        help="The new version may replace a challenger that a person deployed.",
    ),
)
async def retrain(settings: Settings, model: str, reason: str, replace_challenger: bool) -> None:
    """Ask for a new MODEL version trained on recent feedback, shadowed (admin API)."""
    from phoenix_stream.lifecycle.admin_client import call

    body: dict[str, Any] = {"reason": reason, "actor": "cli"}
    if replace_challenger:
        body["replace_challenger"] = True
    answer = await call(settings, "POST", f"/v1/models/{model}/retrain", body)
    request = answer["request"]
    click.echo(f"{model}: retrain requested ({request['reason']}) on {answer['topic']}")
    if answer.get("warning"):
        click.echo(f"warning: {answer['warning']}", err=True)


@command(click.argument("model"))
async def clear_deployment(settings: Settings, model: str) -> None:
    """Forget the deployments of MODEL, a model not in the registry (admin API)."""
    from phoenix_stream.lifecycle.admin_client import call

    answer = await call(settings, "DELETE", f"/v1/deployments/{model}")
    click.echo(f"{model}: deployments cleared (a tombstone on {answer['topic']})")


@command(
    click.argument("model"),
    click.option(
        "--limit",
        type=click.IntRange(1, 1000),
        default=20,
        help="How many of the latest windows to show.",
    ),
)
async def drift(settings: Settings, model: str, limit: int) -> None:
    """Show MODEL's latest drift reports: per window and feature, KS D, p, drifted."""
    from phoenix_stream.drift.console import fetch_reports, render_reports

    answer = await fetch_reports(settings, model, limit)
    click.echo(render_reports(model, answer.reports))
    if answer.warning:
        click.echo(f"warning: {answer.warning}", err=True)


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
