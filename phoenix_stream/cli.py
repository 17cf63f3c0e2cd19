"""The ``phoenix-stream`` console script: our commands (``commands.py``), Faust's worker.

``phoenix-stream worker`` is ``faust -A phoenix_stream.app worker`` with two defaults
changed: the uvloop event loop, and ``--loglevel info`` (at Faust's default ``warn``
its spinner sets the root logger to DEBUG and every debug call builds a record).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from phoenix_stream.exceptions import ConfigError
from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.settings import Settings


def worker_argv(argv: Sequence[str], log_level: str = "info") -> list[str]:
    """Faust CLI arguments with our defaults added where the user gave none."""
    args = list(argv)
    if not any(a in ("-L", "--loop") or a.startswith("--loop=") for a in args):
        try:
            import uvloop  # noqa: F401
        except ImportError:  # pragma: no cover - uvloop has no Windows wheel
            pass
        else:
            args[:0] = ["--loop", "uvloop"]
    if not any(a in ("-l", "--loglevel") or a.startswith("--loglevel=") for a in args):
        args[:0] = ["--loglevel", log_level]
    return args


def run_worker(argv: Sequence[str], settings: Settings, log_level: str) -> None:
    """Faust's ``worker`` command with ``argv`` (its options); does not return."""
    if not any(a in ("-h", "--help") for a in argv):
        # Said before Faust starts: the app's own refusal comes later, with a traceback.
        try:
            ControlAuth.from_settings(settings).require()
        except ConfigError as exc:
            raise SystemExit(f"phoenix-stream: {exc}") from None
    # Faust picks its event loop from sys.argv when ``faust`` is first imported: nothing
    # before this line imports it (tests/unit/test_cli.py checks).
    sys.argv = [sys.argv[0], *worker_argv(["worker", *argv], log_level)]
    from phoenix_stream.app import app  # the app is built here, for the worker only

    app.main()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``phoenix-stream`` console script."""
    from phoenix_stream.commands import cli

    cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="phoenix-stream")
