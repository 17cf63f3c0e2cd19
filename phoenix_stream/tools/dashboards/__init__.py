"""Grafana dashboards as code: grafana/dashboards/*.json are generated from this package.

Regenerate after a change: ``python -m phoenix_stream.tools.dashboards`` from the
repository's folder (``--check`` only compares). tests/unit/test_dashboards.py fails while
the committed JSON differs from a fresh render, or queries a metric that
``phoenix_stream.metrics`` does not export.

The dashboards are written with ``grafana-foundation-sdk`` (Grafana Labs' own "Foundation
SDK"), pinned to its build for Grafana 11.6, rather than with grafanalib:

- it is official and kept: Grafana Labs generates its types and builders from Grafana's
  own schemas (with the ``cog`` generator), one build per Grafana version, so the JSON has
  the schema version and the panel options that Grafana 11.6 expects, and a new Grafana
  is a new pin, not a hand port;
- it is typed (``py.typed``, a builder method per option), so mypy strict checks the
  dashboards like the rest of the package;
- grafanalib is a community project (started at Weaveworks) whose last release, 0.7.1, is
  of January 2024; it models panels by hand and lags Grafana's schema.

The layout (what each panel asks and queries) is plain data in ``spec`` and the four
dashboard modules; ``render`` is the one module that touches the SDK. PromQL windows are
fixed (``[1m]``, ``[1h]``), and ``panel_queries()`` / ``annotation_queries()`` give every
query with the Grafana variables replaced, ready for Prometheus' HTTP API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from phoenix_stream.tools.dashboards import drift, overview, pipeline, rollouts
from phoenix_stream.tools.dashboards.promql import PLAIN_PROMETHEUS, substitute
from phoenix_stream.tools.dashboards.spec import Dashboard

__all__ = [
    "DASHBOARDS",
    "PLAIN_PROMETHEUS",
    "AnnotationQuery",
    "Dashboard",
    "PanelQuery",
    "annotation_queries",
    "panel_queries",
    "render",
    "stale",
    "write",
]

DASHBOARDS: tuple[Dashboard, ...] = (
    overview.DASHBOARD,
    rollouts.DASHBOARD,
    drift.DASHBOARD,
    pipeline.DASHBOARD,
)
"""Every dashboard, in the order of their files' names in the README."""


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL query of a panel: dashboard uid, panel title, Grafana ref id, expression."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str


@dataclass(frozen=True)
class AnnotationQuery:
    """One annotation's PromQL: dashboard uid, annotation name, expression."""

    dashboard: str
    name: str
    expr: str


def panel_queries(values: Mapping[str, str] = PLAIN_PROMETHEUS) -> list[PanelQuery]:
    """Every panel query of every dashboard with Grafana's variables replaced from ``values``.

    The default makes each a plain Prometheus query (``$worker`` and ``$model`` -> ``.*``,
    ``$__rate_interval`` -> ``1m``); pass ``{**PLAIN_PROMETHEUS, "worker": "127.0.0.1:6066"}``
    to aim at one worker. Raises ``KeyError`` for a variable ``values`` has no value for.
    """
    return [
        PanelQuery(dashboard.uid, panel.title, chr(ord("A") + index), substitute(t.expr, values))
        for dashboard in DASHBOARDS
        for panel in dashboard.panels()
        for index, t in enumerate(panel.targets)
    ]


def annotation_queries(values: Mapping[str, str] = PLAIN_PROMETHEUS) -> list[AnnotationQuery]:
    """Every annotation query, variables replaced as in ``panel_queries``."""
    return [
        AnnotationQuery(dashboard.uid, annotation.name, substitute(annotation.expr, values))
        for dashboard in DASHBOARDS
        for annotation in dashboard.annotations
    ]


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    # Imported here so that the queries above need no SDK (it is a dev dependency).
    from phoenix_stream.tools.dashboards.render import to_json

    return {dashboard.file_name: to_json(dashboard) for dashboard in DASHBOARDS}


def stale(directory: Path) -> list[str]:
    """Names of the files in ``directory`` that differ from a fresh render, or are missing."""
    return [
        name
        for name, text in render().items()
        if not (directory / name).is_file() or (directory / name).read_text() != text
    ]


def write(directory: Path) -> list[Path]:
    """Write every dashboard's JSON into ``directory``; the paths written."""
    paths = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths
