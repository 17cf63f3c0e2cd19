"""The ``phoenix-stream`` commands: one click group, ours, with Faust's worker in it.

Only ``phoenix-stream worker`` builds the Faust app (it is Faust's own worker command, see
``cli.run_worker``); every other command runs on a plain ``asyncio.run`` and imports only
what it uses, so a command that needs no worker answers at once and prints only its own
output: no Faust Worker lifecycle lines, no one-second "Gathering all futures" pause.
:func:`build_cli` puts the group together from ``base`` (what commands share, and
``worker``), ``local`` (services, train, registry, seed), ``traffic`` (simulate, demo,
bench, tail) and ``decisions`` (deploy, promote, rollback, retrain, clear-deployment,
drift).
"""

from __future__ import annotations

import click

from phoenix_stream.commands import base, decisions, local, traffic
from phoenix_stream.commands.base import until_sigterm

__all__ = ["build_cli", "cli", "until_sigterm"]


def build_cli() -> click.Group:
    """The ``phoenix-stream`` group with every command in it."""

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option(
        "-l",
        "--loglevel",
        type=click.Choice(base.LOG_LEVELS, case_sensitive=False),
        default=None,
        help=(
            "Level of the project's own logs, on stderr (default: PHOENIX_LOG_LEVEL if set, "
            "else info for worker and warning for the other commands)."
        ),
    )
    @click.version_option(base.package_version(), "--version", prog_name="phoenix-stream")
    def group(loglevel: str | None) -> None:
        """phoenix-stream: real-time ML inference on Faust, with drift detection and healing.

        Configuration comes from PHOENIX_* environment variables (see the README).
        """

    group.add_command(base.worker)
    for command in (
        local.services,
        local.train,
        local.registry,
        local.seed,
        traffic.simulate,
        traffic.demo,
        traffic.bench,
        traffic.tail,
        decisions.deploy,
        decisions.promote,
        decisions.rollback,
        decisions.retrain,
        decisions.clear_deployment,
        decisions.drift,
    ):
        group.add_command(command)
    return group


cli = build_cli()
