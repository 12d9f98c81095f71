"""Grafana dashboards in meshobs terms; the only module that imports grafanalib.

Callers describe a dashboard as rows of panels with queries; this module lays them out on
Grafana's 24-column grid, builds grafanalib objects, and post-processes grafanalib's JSON into
a modern (schemaVersion 39), null-free, key-sorted document so rebuilds are byte-identical.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grafanalib.core as g
from grafanalib._gen import DashboardEncoder

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_KINDS = ("timeseries", "stat", "table", "bargauge", "text")
# Threshold steps of a ratio panel: green when high (success, coverage) or when low (failures).
GOOD_HIGH = ((None, "red"), (0.95, "orange"), (0.99, "green"))
BAD_HIGH = ((None, "green"), (0.01, "orange"), (1, "red"))
# Grafana's rate window for a panel: at least four scrape intervals, growing with the time range
RATE = "$__rate_interval"
# grafanalib still writes these pre-Grafana-7 keys; modern Grafana ignores or rewrites them.
_LEGACY_KEYS = ("rows", "style", "hideControls", "sharedCrosshair", "span", "minSpan", "height", "editable_rows")


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    max_value: float | None = None
    min_value: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in PANEL_KINDS:
            raise ValueError(f"panel kind {self.kind!r} is not one of {PANEL_KINDS}")


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str  # e.g. label_values(metric{...}, label)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    tags: tuple[str, ...]
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]
    link_tag: str  # dashboards sharing this tag link to each other
    default_datasource: str = "Prometheus"
    refresh: str = "30s"
    time_from: str = "now-6h"
    extra: dict[str, Any] = field(default_factory=dict)


def _targets(panel: Panel) -> list[g.Target]:
    return [
        g.Target(
            expr=q.expr, legendFormat=q.legend, refId=chr(ord("A") + i), instant=q.instant,
            format="table" if panel.kind == "table" else "time_series", datasource=DATASOURCE,
        )
        for i, q in enumerate(panel.queries)
    ]


def _thresholds(panel: Panel) -> list[dict]:
    return [{"value": value, "color": color} for value, color in panel.thresholds]


def _field_config(panel: Panel) -> dict:
    defaults: dict[str, Any] = {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": _thresholds(panel)}}
    if panel.max_value is not None:
        defaults["max"] = panel.max_value
    if panel.min_value is not None:
        defaults["min"] = panel.min_value
    return {"defaults": defaults, "overrides": []}


def _panel(panel: Panel, pos: g.GridPos) -> Any:
    common = dict(title=panel.title, description=panel.description, dataSource=DATASOURCE, targets=_targets(panel), gridPos=pos)
    if panel.kind == "timeseries":
        built = g.TimeSeries(unit=panel.unit, legendDisplayMode="table", legendPlacement="bottom",
                             legendCalcs=["mean", "max", "lastNotNull"], tooltipMode="multi", **common)
    elif panel.kind == "stat":
        built = g.Stat(reduceCalc="lastNotNull", graphMode="area", colorMode="value", format=panel.unit, **common)
    elif panel.kind == "table":
        built = g.Table(unit=panel.unit, transformations=[{"id": "merge", "options": {}}], **common)
    elif panel.kind == "bargauge":
        built = g.BarGauge(format=panel.unit, orientation="horizontal", displayMode="gradient", calc="lastNotNull", **common)
    else:
        built = g.Text(title=panel.title, content=panel.description, mode="markdown", gridPos=pos)
    return built


# Grid rows visible without scrolling: a row starting below this is rendered collapsed, so a
# dashboard opens fast and its queries below the fold run only when a reader opens the row.
FIRST_SCREEN = 24


def _place(panels: tuple[Panel, ...], y: int) -> tuple[list[tuple[Panel, g.GridPos]], int]:
    """Panels on the grid from row `y`, left to right; the placed panels and the next free row."""
    placed = []
    x, line_height = 0, 0
    for panel in panels:
        if x + panel.width > 24:
            x, y = 0, y + line_height
            line_height = 0
        placed.append((panel, g.GridPos(h=panel.height, w=panel.width, x=x, y=y)))
        x += panel.width
        line_height = max(line_height, panel.height)
    return placed, y + line_height


def _layout(rows: tuple[Row, ...]) -> list[Any]:
    items: list[Any] = []
    y = 0
    for row in rows:
        collapsed = y >= FIRST_SCREEN
        placed, end = _place(row.panels, y + 1)
        header = g.GridPos(h=1, w=24, x=0, y=y)
        if collapsed:
            items.append(g.RowPanel(title=row.title, gridPos=header, collapsed=True,
                                    panels=[_panel(*item) for item in placed]))
            y += 1
        else:
            items.append(g.RowPanel(title=row.title, gridPos=header))
            items.extend(placed)
            y = end
    return items


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None and k not in _LEGACY_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _template(variable: Variable) -> g.Template:
    return g.Template(
        name=variable.name, label=variable.label, query=variable.query, dataSource=DATASOURCE,
        includeAll=True, multi=True, allValue=".*", refresh=2, sort=1,
    )


def render(dashboard: Dashboard) -> bytes:
    """The dashboard as Grafana JSON, byte-stable."""
    titles = [(panel.title, panel.kind) for row in dashboard.rows for panel in row.panels]
    repeated = sorted({t for t in titles if titles.count(t) > 1})
    if repeated:  # a panel's field config is found by its title and kind
        raise ValueError(f"dashboard {dashboard.uid} has two {repeated[0][1]} panels titled {repeated[0][0]!r}")
    panels = []
    for item in _layout(dashboard.rows):
        panels.append(_panel(*item) if isinstance(item, tuple) else item)
    datasource = g.Template(name="datasource", label="Data source", query="prometheus", type="datasource",
                            default=dashboard.default_datasource)
    built = g.Dashboard(
        title=dashboard.title, uid=dashboard.uid, description=dashboard.description, tags=list(dashboard.tags),
        panels=panels, timezone="browser", refresh=dashboard.refresh, graphTooltip=1,
        time=g.Time(dashboard.time_from, "now"),
        templating=g.Templating(list=[datasource] + [_template(v) for v in dashboard.variables]),
        links=[g.DashboardLink(type="dashboards", tags=[dashboard.link_tag], asDropdown=True, includeVars=True,
                               keepTime=True, title="Related dashboards")],
    ).auto_panel_ids()
    data = json.loads(json.dumps(built.to_json_data(), cls=DashboardEncoder))
    data = _modernize(_strip(data), dashboard)
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _modernize(data: dict, dashboard: Dashboard) -> dict:
    data["schemaVersion"] = SCHEMA_VERSION
    data["editable"] = False  # provisioned: edits belong in code
    data.pop("id", None)
    nested = [p for row in data["panels"] if row.get("type") == "row" for p in row.get("panels", [])]
    for panel in data["panels"] + nested:
        for step in panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", []):
            if step.get("value") == "null":
                step["value"] = None
        if panel.get("type") != "row":
            panel["fieldConfig"] = _field_config(_spec_by_title(dashboard, panel["title"], panel["type"]))
            panel.pop("thresholds", None)
    for variable in data["templating"]["list"]:
        if variable["type"] == "datasource":
            variable["current"] = {"selected": True, "text": dashboard.default_datasource, "value": dashboard.default_datasource}
            variable["options"] = []
            variable["query"] = "prometheus"
        else:
            variable["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
            variable["definition"] = variable["query"]
            variable["query"] = {"query": variable["query"], "refId": "PrometheusVariableQueryEditor-VariableQuery"}
            variable["options"] = []
    return data


def _spec_by_title(dashboard: Dashboard, title: str, kind: str) -> Panel:
    for row in dashboard.rows:
        for panel in row.panels:
            if (panel.title, panel.kind) == (title, kind):
                return panel
    raise KeyError(title)
