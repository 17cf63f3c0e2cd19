"""Run the benchmark with every size adjustable (``phoenix-stream bench`` has the defaults).

    .venv/bin/python scripts/bench.py --json /tmp/bench.json [--requests 60000 ...]

Settings come from the ``PHOENIX_*`` environment as for the worker; embedded services are
started under ``$PHOENIX_STATE_DIR/bench`` unless all three service URLs are set.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import uvloop

from phoenix_stream.settings import Settings
from phoenix_stream.tools.bench.runner import BenchConfig, run_bench


def main() -> None:
    """Parse the sizes, run the bench under uvloop, write the JSON if asked."""
    parser = argparse.ArgumentParser(description="phoenix-stream benchmark")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    for field in fields(BenchConfig):
        kind = float if field.type in ("float", "float | None") else int
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=kind,
            default=None,
            help=f"default {field.default}",
        )
    args = parser.parse_args()
    overrides = {
        f.name: getattr(args, f.name)
        for f in fields(BenchConfig)
        if getattr(args, f.name) is not None
    }
    result = uvloop.run(run_bench(Settings.from_env(), BenchConfig(**overrides)))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
