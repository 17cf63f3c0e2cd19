"""Commands that ask a running worker: deployments, promotion, rollback, retraining, drift."""

from __future__ import annotations

from typing import Any

import click

from phoenix_stream.commands.base import command
from phoenix_stream.settings import Settings


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
