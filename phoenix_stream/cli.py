"""The ``phoenix-stream`` console script: Faust's CLI for our app, plus our commands.

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


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``phoenix-stream`` console script."""
    # Settings import no Faust: reading them here leaves the event loop choice open.
    settings = Settings.from_env()
    log_level = settings.log_level
    if "worker" in (sys.argv[1:] if argv is None else argv):
        # Said before Faust starts: the app's own refusal comes later, with a traceback.
        try:
            ControlAuth.from_settings(settings).require()
        except ConfigError as exc:
            raise SystemExit(f"phoenix-stream: {exc}") from None
    args = worker_argv(sys.argv[1:] if argv is None else argv, log_level)
    # Faust picks its event loop from sys.argv when ``faust`` is first imported.
    sys.argv = [sys.argv[0], *args]
    from phoenix_stream.app import app  # settings are read here, not at import of cli

    app.main()
