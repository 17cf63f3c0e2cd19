"""The committed Grafana dashboards are current and query only metrics we export."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

from phoenix_stream import metrics

ROOT = Path(__file__).resolve().parents[2]


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_dashboards", ROOT / "scripts" / "build_dashboards.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_match_the_code() -> None:
    for name, text in load_builder().render().items():
        assert (ROOT / "grafana" / "dashboards" / name).read_text() == text, (
            f"{name} is stale: run python scripts/build_dashboards.py"
        )


def test_every_queried_metric_is_exported() -> None:
    # A labelled metric has no samples until used, so names come from the families.
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exported = {
        family.name + suffix
        for family in metrics.REGISTRY.collect()
        for suffix in suffixes[family.type]
    }
    for path in (ROOT / "grafana" / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                for name in re.findall(r"phoenix_[a-z_]+", target["expr"]):
                    assert name in exported, f"{path.name}: {name} is not exported"
