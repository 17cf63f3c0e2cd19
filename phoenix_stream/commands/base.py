"""What every ``phoenix-stream`` command shares: settings, logs, errors, signals, ``worker``.

A command is ``async def name(settings, **options)`` made a click command by
:func:`command`; it runs on a plain ``asyncio.run`` (:func:`run_command`) and imports only
what it uses. Only ``worker`` builds the Faust app (``cli.run_worker``); importing this
module imports no Faust, which picks its event loop when first imported.
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
from typing import Any, NoReturn

import click

from phoenix_stream.embedded import BROKER_KINDS
from phoenix_stream.exceptions import ConfigError, PhoenixError
from phoenix_stream.redaction import redact
from phoenix_stream.settings import ENV, Settings

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
AsyncCommand = Callable[..., Coroutine[Any, Any, Any]]


def fail(exc: Exception) -> NoReturn:
    click.echo(f"error: {redact(str(exc))}", err=True)
    raise SystemExit(1)


def _not_service_lifecycle(record: logging.LogRecord) -> bool:
    """False for mode's info lines on a service's life (``[^FeatureStore]: Starting...``)."""
    return record.levelno > logging.INFO or not str(record.msg).startswith("[^")


def package_version() -> str:
    try:
        return metadata.version("phoenix-stream")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "unknown"


def settings_from_env() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        fail(exc)


def log_level(settings: Settings, *, unset: str | None = None) -> str:
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


def run_command(command: AsyncCommand, kwargs: dict[str, Any]) -> None:
    """Run one command to its end on ``asyncio.run``.

    Logs of ``phoenix_stream`` go to stderr at ``--loglevel`` (warning by default), other
    libraries' at warning and above, services' start/stop lines not at all. A
    ``PhoenixError`` ends the command with ``error: ...`` and exit status 1, Ctrl-C with
    130, SIGTERM with 143; on both signals the command unwinds first (workers and services
    it started stop).
    """
    settings = settings_from_env()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_not_service_lifecycle)
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("phoenix_stream").setLevel(log_level(settings, unset="warning"))
    try:
        asyncio.run(until_sigterm(command(settings, **kwargs)))
    except PhoenixError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except asyncio.CancelledError:  # SIGTERM
        raise SystemExit(143) from None


def command(*params: Callable[[Any], Any]) -> Callable[[AsyncCommand], click.Command]:
    """Make ``async def name(settings, **options)`` the command ``name`` (``_`` as ``-``),
    with click ``params`` (arguments and options, in help order); ``build_cli`` adds it."""

    def register(function: AsyncCommand) -> click.Command:
        @functools.wraps(function)
        def callback(**kwargs: Any) -> None:
            run_command(function, kwargs)

        decorated: Any = callback
        for param in reversed(params):
            decorated = param(decorated)
        return click.command(name=function.__name__.replace("_", "-"))(decorated)

    return register


@click.command(
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

    settings = settings_from_env()
    run_worker(list(ctx.args), settings, log_level(settings).lower())


async def until_sigterm(command: Coroutine[Any, Any, Any]) -> None:
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


def path_option(flag: str, dest: str, help: str) -> Callable[[Any], Any]:
    """An option taking a file or folder path (None when not given)."""
    return click.option(flag, dest, type=click.Path(path_type=Path), default=None, help=help)


async def write_json(path: Path | None, document: Any) -> None:
    """Write ``document`` as indented JSON to ``path``, when one was given."""
    if path is not None:
        await asyncio.to_thread(path.write_text, json.dumps(document, indent=2) + "\n")


def broker_option(help: str) -> Callable[[Any], Any]:
    """``--broker tansu|kafka``, the embedded broker to start (default Tansu)."""
    return click.option(
        "--broker",
        type=click.Choice(list(BROKER_KINDS)),
        default="tansu",
        show_default=True,
        help=help,
    )
