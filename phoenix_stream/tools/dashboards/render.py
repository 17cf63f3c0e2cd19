"""Grafana dashboard JSON from the specs, built with the typed builders of
grafana-foundation-sdk (the build for Grafana 11.6: its schema version and panel options).

The only module that imports the SDK. Output is deterministic: panel and row ids count
from 1 in layout order, grid positions follow from the widths and heights, and the JSON
is written with sorted keys, so the committed files can be compared with a fresh render.
"""

from __future__ import annotations

import json
from typing import TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cog
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import prometheus as prometheus_models

from phoenix_stream.tools.dashboards.spec import Annotation, Dashboard, Panel, Target, Variable

DATASOURCE_UID = "prometheus"
"""The provisioned Prometheus data source (grafana/provisioning/datasources/)."""

_AnyPanel = TypeVar("_AnyPanel", timeseries.Panel, stat.Panel, table.Panel)


def _datasource() -> models.DataSourceRef:
    return models.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)


class _PrometheusAnnotation(models.AnnotationQuery):
    """An annotation query with the Prometheus fields the SDK's generic schema leaves out.

    Grafana's Prometheus data source reads ``titleFormat``, ``tagKeys`` and ``step`` beside
    ``expr`` (its annotation editor writes them there), so they are added to the JSON.
    """

    def __init__(self, spec: Annotation) -> None:
        super().__init__(
            name=spec.name,
            datasource=_datasource(),
            enable=True,
            icon_color=spec.color,
            expr=spec.expr,
        )
        self.title_format = spec.title
        self.tag_keys = spec.tags
        self.step = spec.step

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        payload.update(titleFormat=self.title_format, tagKeys=self.tag_keys, step=self.step)
        return payload


class _AnnotationBuilder(cog.Builder[models.AnnotationQuery]):
    """Hands the dashboard builder a ``_PrometheusAnnotation``."""

    def __init__(self, spec: Annotation) -> None:
        self._spec = spec

    def build(self) -> models.AnnotationQuery:
        return _PrometheusAnnotation(self._spec)


def _built_in_annotation() -> builders.AnnotationQuery:
    """Grafana's own annotations and alerts, which Grafana adds to a dashboard without it."""
    return (
        builders.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(models.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .type("dashboard")
        .built_in(1)
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
    )


def _variable(spec: Variable) -> builders.QueryVariable:
    return (
        builders.QueryVariable(spec.name)
        .label(spec.label)
        .description(spec.description)
        .datasource(_datasource())
        .query(spec.query)
        .multi(True)
        .include_all(True)
        # One regex for All instead of every value joined: the query stays short.
        .all_value(".*")
        .current(models.VariableOption(selected=True, text="All", value="$__all"))
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )


def _query(target: Target, ref_id: str, *, instant: bool) -> prometheus.Dataquery:
    query = prometheus.Dataquery().ref_id(ref_id).datasource(_datasource()).expr(target.expr)
    if target.legend:
        query = query.legend_format(target.legend)
    if instant:
        query = query.instant().format(prometheus_models.PromQueryFormat.TABLE)
    return query


def _common(builder: _AnyPanel, spec: Panel, panel_id: int) -> _AnyPanel:
    """What every kind of panel shares: identity, question, size, unit, queries."""
    builder = (
        builder.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(_datasource())
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
    )
    if spec.min is not None:
        builder = builder.min(spec.min)
    if spec.max is not None:
        builder = builder.max(spec.max)
    for index, target in enumerate(spec.targets):
        builder = builder.with_target(
            _query(target, chr(ord("A") + index), instant=spec.kind == "table")
        )
    return builder


def _timeseries(spec: Panel) -> timeseries.Panel:
    builder = (
        timeseries.Panel()
        .fill_opacity(10)
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
        )
    )
    if spec.stacked:
        builder = builder.stacking(
            common_builders.StackingConfig().mode(common.StackingMode.NORMAL)
        ).fill_opacity(40)
    if spec.log_scale:
        builder = builder.scale_distribution(
            common_builders.ScaleDistributionConfig().type(common.ScaleDistribution.LOG).log(10)
        )
    return builder


def _stat() -> stat.Panel:
    # The last value, with the trend under it: what the number is now, and whither.
    return (
        stat.Panel()
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(common_builders.ReduceDataOptions().values(False).calcs(["lastNotNull"]))
    )


def _table() -> table.Panel:
    # Instant queries in table format carry a Time column that says nothing here.
    organize = models.DataTransformerConfig(
        id_val="organize", options={"excludeByName": {"Time": True}}
    )
    return table.Panel().with_transformation(organize).show_header(True)


def _panel(spec: Panel, panel_id: int) -> cog.Builder[models.Panel]:
    if spec.kind == "stat":
        return _common(_stat(), spec, panel_id)
    if spec.kind == "table":
        return _common(_table(), spec, panel_id)
    return _common(_timeseries(spec), spec, panel_id)


def build(spec: Dashboard) -> builders.Dashboard:
    """The SDK builder of one dashboard."""
    builder = (
        builders.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(list(spec.tags))
        .time(spec.time_from, "now")
        .refresh(spec.refresh)
        .timezone("browser")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .link(
            builders.DashboardLink("phoenix-stream")
            .type(models.DashboardLinkType.DASHBOARDS)
            .tags(["phoenix-stream"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in spec.variables:
        builder = builder.with_variable(_variable(variable))
    builder = builder.annotation(_built_in_annotation())
    for annotation in spec.annotations:
        builder = builder.annotation(_AnnotationBuilder(annotation))
    next_id = 1
    for row in spec.rows:
        builder = builder.with_row(builders.Row(row.title).id(next_id))
        next_id += 1
        for panel in row.panels:
            builder = builder.with_panel(_panel(panel, next_id))
            next_id += 1
    return builder


def to_json(spec: Dashboard) -> str:
    """The dashboard's JSON text, keys sorted, two-space indent, a final newline."""
    return json.dumps(build(spec).build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"
