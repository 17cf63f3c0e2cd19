"""``python -m phoenix_stream.tools.dashboards [--out DIR] [--check]``: write the dashboards.

Exit status 0 when written (or current with ``--check``), 1 when ``--check`` finds stale
files, 2 when the output folder is missing or the SDK is not installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from phoenix_stream.tools import dashboards

REQUIREMENT = "grafana-foundation-sdk==1769699379!11.6.0"
"""The SDK build for Grafana 11.6 (pip's newest is the 10.1 build: its epoch is higher)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or check) grafana/dashboards/*.json; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m phoenix_stream.tools.dashboards")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("grafana/dashboards"),
        help="folder of the dashboard JSON files (default: grafana/dashboards, run from "
        "the repository's folder)",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    if not out.is_dir():
        print(
            f"{out}: no such folder (run from the repository's folder, or --out)", file=sys.stderr
        )
        return 2
    try:
        if args.check:
            stale = dashboards.stale(out)
            for name in stale:
                print(f"{out / name} is stale: run python -m phoenix_stream.tools.dashboards")
            return 1 if stale else 0
        for path in dashboards.write(out):
            print(f"wrote {path}")
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("grafana_foundation_sdk"):
            raise
        print(f"the dashboards need {REQUIREMENT!r} (the dev extra)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
