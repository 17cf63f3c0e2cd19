"""The README's metric catalogue lists exactly the metrics a worker exports, as exported."""

from __future__ import annotations

from pathlib import Path

from phoenix_stream import metrics
from phoenix_stream.batch_histogram import BatchHistogram

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- metric catalogue:"


def catalogue() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Name -> (type, labels) of the README table after the marker."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(MARKER))
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in lines[start + 3 :]:
        if not line.startswith("| `"):
            break
        name, kind, labels = (cell.strip() for cell in line.strip("|").split("|")[:3])
        key = name.strip("`")
        assert key not in rows, f"{key} twice in the catalogue"
        names = () if labels == "-" else tuple(label.strip() for label in labels.split(","))
        rows[key] = (kind, names)
    return rows


def exported() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Name (as queried: counters with ``_total``) -> (type, labels) of every metric."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for collector in set(metrics.REGISTRY._names_to_collectors.values()):
        if isinstance(collector, BatchHistogram):
            found[collector.name] = ("histogram", collector._label_names)
            continue
        kind = collector._type  # type: ignore[attr-defined]
        name = collector._name + ("_total" if kind == "counter" else "")  # type: ignore[attr-defined]
        found[name] = (kind, tuple(collector._labelnames))  # type: ignore[attr-defined]
    return found


def test_the_catalogue_is_what_the_workers_export() -> None:
    assert catalogue() == exported()


def test_names_follow_the_prometheus_conventions() -> None:
    for name, (kind, labels) in exported().items():
        assert name.startswith("phoenix_"), name
        assert (kind == "counter") == name.endswith("_total"), name
        assert not name.endswith(("_ms", "_milliseconds")), f"{name}: base units only"
        # No label a caller chooses: ids, paths, principals.
        assert not {"request_id", "entity_id", "path", "principal", "actor"} & set(labels)
    assert "phoenix_build_info" in exported()


def test_every_duration_is_in_seconds() -> None:
    for name, (kind, _) in exported().items():
        if kind == "histogram" and ("latency" in name or "duration" in name):
            assert name.endswith("_seconds"), name
