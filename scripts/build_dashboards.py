"""Write grafana/dashboards/*.json: ``python -m phoenix_stream.tools.dashboards``, from any folder.

The dashboards are code in phoenix_stream/tools/dashboards/ (grafana-foundation-sdk);
arguments pass through (``--check``: compare only).
"""

from __future__ import annotations

import sys
from pathlib import Path

from phoenix_stream.tools.dashboards.__main__ import main

OUT = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"

if __name__ == "__main__":
    sys.exit(main(["--out", str(OUT), *sys.argv[1:]]))
