"""Commands on this machine's own parts: the embedded services, the model registry, Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from phoenix_stream.commands.base import broker_option, command, fail, path_option
from phoenix_stream.embedded import (
    SERVICE_NAMES,
    service_status,
    start_services,
    stop_services,
)
from phoenix_stream.exceptions import PhoenixError
from phoenix_stream.redaction import redact
from phoenix_stream.settings import Settings


@command(
    click.argument("action", type=click.Choice(["up", "down", "status"])),
    click.argument("names", nargs=-1, type=click.Choice(list(SERVICE_NAMES))),
    broker_option("With up: Tansu (Python only) or Apache Kafka (KRaft; needs a JDK 17+)."),
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
        fail(exc)
    for status in service_status(state_dir).values():
        state = "running" if status.running else "stopped"
        pid = status.pid if status.pid is not None else "-"
        name = f"{status.name} ({status.kind})" if status.kind else status.name
        click.echo(f"{name:<16} {state:<8} pid {pid!s:<8} {redact(status.url)}")


@command(
    path_option("--models-dir", "models_dir", "Registry folder (default PHOENIX_MODELS_DIR)."),
    click.option("--force/--no-force", default=False, help="Retrain even if models exist."),
)
async def train(settings: Settings, models_dir: Path | None, force: bool) -> None:
    """Train the demo models (champion and challenger) into the registry."""
    from phoenix_stream.training.demo_models import demo_models_present

    target = models_dir or settings.models_dir
    if not force and demo_models_present(target):
        click.echo(f"already present: demo models in {target}")
        return
    from phoenix_stream.training.train import train_demo_models  # scikit-learn: seconds

    paths = await asyncio.to_thread(train_demo_models, target)
    click.echo(f"trained {len(paths)} model versions into {target}")


@command(
    click.argument("action", type=click.Choice(["list", "register"])),
    click.argument("path", required=False, type=click.Path(path_type=Path)),
    click.option("--name", default=None, help="Model name; must equal the manifest's."),
    click.option("--version", default=None, help="Version; must equal the manifest's."),
    path_option("--models-dir", "models_dir", "Registry folder (default PHOENIX_MODELS_DIR)."),
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
    from phoenix_stream.serving.manifest import MANIFEST_FILE, Manifest
    from phoenix_stream.serving.registration import MIN_REFERENCE_ROWS, register_version
    from phoenix_stream.serving.registry import ModelRegistry
    from phoenix_stream.serving.router import Deployment

    target = models_dir or settings.models_dir
    if action == "register":
        if path is None:
            fail(click.UsageError("register needs the PATH of a version folder"))
        limit = MIN_REFERENCE_ROWS if min_reference_rows is None else min_reference_rows
        manifest = await asyncio.to_thread(
            register_version, path, target, name=name, version=version, min_reference_rows=limit
        )
        click.echo(f"registered {manifest.name} version {manifest.version} in {target}")
        return
    if path is not None or name or version or min_reference_rows is not None:
        fail(click.UsageError("list takes no PATH, --name, --version or --min-reference-rows"))
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
    from phoenix_stream.training.seeding import seed_feature_store

    count = await seed_feature_store(settings.redis_url, entities)
    click.echo(f"seeded {count} entities into {redact(settings.redis_url)}")
