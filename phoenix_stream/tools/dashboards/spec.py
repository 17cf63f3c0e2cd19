"""What a dashboard shows, as plain data: rows of panels, their queries and annotations.

The dashboard modules (``overview``, ``rollouts``, ``drift``, ``pipeline``) write these;
``render`` turns them into Grafana's JSON with the foundation SDK, and
``panel_queries()`` reads the PromQL back out of them for the integration test. Nothing
here imports the SDK, so a dashboard reads as a list of questions and queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PanelKind = Literal["timeseries", "stat", "table"]


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel; ``legend`` is Grafana's legend format (``{{label}}``)."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel: the question it answers (``description``) and the queries that answer it.

    ``width`` and ``height`` are grid units (24 columns a row); ``unit`` is a Grafana unit
    id (``s``, ``reqps``, ``percentunit``, ``short``, ...); ``log_scale`` draws the y axis
    in log10 (p-values); ``stacked`` stacks the series (parts of one whole).
    """

    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str = "short"
    kind: PanelKind = "timeseries"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    log_scale: bool = False
    stacked: bool = False


@dataclass(frozen=True)
class Row:
    """A titled band of panels, laid out left to right and wrapped at 24 columns."""

    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Annotation:
    """A Prometheus annotation: a marker on every time axis where ``expr`` has a sample.

    ``title`` and ``tags`` are Grafana's ``titleFormat`` and ``tagKeys`` (labels of the
    series, comma separated); ``step`` is the evaluation step (Prometheus duration).
    """

    name: str
    expr: str
    title: str
    tags: str
    color: str
    step: str = "60s"


@dataclass(frozen=True)
class Variable:
    """A query template variable over a label's values, multi-select with All (``.*``)."""

    name: str
    label: str
    query: str
    description: str


@dataclass(frozen=True)
class Dashboard:
    """One dashboard; ``uid`` is stable (links and provisioning) and names its JSON file."""

    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...]
    annotations: tuple[Annotation, ...] = ()
    time_from: str = "now-1h"
    refresh: str = "30s"
    tags: tuple[str, ...] = ("phoenix-stream",)

    @property
    def file_name(self) -> str:
        """The JSON file under grafana/dashboards/."""
        return f"{self.uid}.json"

    def panels(self) -> list[Panel]:
        """Every panel, row by row."""
        return [panel for row in self.rows for panel in row.panels]
