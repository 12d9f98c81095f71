"""Static checks of rendered dashboards and rule files, shared by the tests and `meshobs check`.

Each check returns problems as strings of the form `path: where: what`, never raises on bad
input: a user runs this on a folder they may have edited by hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import promql_parser
import yaml

from meshobs import config, manifest, prom3, ruler_fields
from meshobs.errors import ConfigError
from meshobs.meshes import DIALECTS

ALLOWED_PANEL_TYPES = frozenset({"timeseries", "stat", "table", "bargauge", "heatmap", "text", "row"})
REMOVED_PANEL_TYPES = frozenset({"graph", "singlestat", "table-old", "grafana-piechart-panel", "grafana-worldmap-panel"})
MIN_SCHEMA_VERSION = 39
GRID_COLUMNS = 24
# Series Prometheus itself writes.
BUILTIN_METRICS = frozenset({"ALERTS", "ALERTS_FOR_STATE", "up", "scrape_duration_seconds"})

_GRAFANA_INTERVALS = re.compile(r"\$(?:__rate_interval|__interval|__range)\b|\$\{(?:__rate_interval|__interval|__range)\}")
_GRAFANA_VARIABLE = re.compile(r"\$\{\w+(?::\w+)?\}|\$\w+")
_MATCHER_VALUE = re.compile(r'(?:=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_VARIABLE_NAME = re.compile(r"\$\{?(\w+)")
GRAFANA_BUILTIN_VARIABLES = frozenset({"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"})
_FIXED_RATE_WINDOW = re.compile(r"\b(?:rate|irate|increase)\((?:[^()\[]|\([^()]*\))*\[(\d+[smhdwy])\]")


def substitute_grafana_variables(expr: str) -> str:
    """Replace Grafana macros and template variables so a Prometheus parser accepts the query."""
    expr = _GRAFANA_INTERVALS.sub("5m", expr)
    return _GRAFANA_VARIABLE.sub(".*", expr)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (alternatives of a `__name__` regex included)."""
    names: set[str] = set()

    def visit(node) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.update(matcher.value.split("|"))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit, None)
    return names


def check_expr(expr: str, known: frozenset[str], where: str) -> list[str]:
    try:
        names = metric_names(expr)
    except ValueError as exc:
        return [f"{where}: PromQL does not parse ({exc}): {expr}"]
    unknown = sorted(names - known)
    return [f"{where}: unknown metric {name}" for name in unknown] + prometheus3_pitfalls(expr, where)


def prometheus3_pitfalls(expr: str, where: str) -> list[str]:
    """What in a parseable expression means something else on Prometheus 3 (meshobs/prom3.py)."""
    return [f"{where}: Prometheus 3: {problem}" for problem in prom3.pitfalls(expr)]


def _load_yaml(path: Path) -> tuple[object, list[str]]:
    try:
        return yaml.safe_load(path.read_text()), []
    except (OSError, yaml.YAMLError) as exc:
        return None, [f"{path}: cannot be read as YAML: {exc}"]


def _recorded_names(loaded: Iterable[tuple[object, list[str]]]) -> set[str]:
    names = set()
    for data, problems in loaded:
        if problems or not isinstance(data, dict):
            continue
        for group in data.get("groups") or []:
            for rule in group.get("rules") or []:
                if isinstance(rule, dict) and "record" in rule:
                    names.add(rule["record"])
    return names


def _check_rules(path: Path, data: object, load_problems: list[str], known: frozenset[str]) -> list[str]:
    """The problems of one rule file, loaded by `_load_yaml`."""
    problems = list(load_problems)
    if problems:
        return problems
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        return [f"{path}: not a Prometheus rule file (no `groups` list)"]
    for group in data["groups"]:
        for index, rule in enumerate(group.get("rules") or []):
            name = rule.get("alert") or rule.get("record") or f"rule {index}"
            where = f"{path}: group {group.get('name')!r}: {name}"
            problems += check_expr(str(rule.get("expr", "")), known, where)
            if "alert" in rule:
                for label in ("severity", "mesh"):
                    if label not in (rule.get("labels") or {}):
                        problems.append(f"{where}: alert has no {label} label")
                for annotation in ("summary", "description", "runbook_url"):
                    if annotation not in (rule.get("annotations") or {}):
                        problems.append(f"{where}: alert has no {annotation} annotation")
    return problems


def _all_panels(panels: list) -> Iterable[dict]:
    for panel in panels:
        yield panel
        yield from _all_panels(panel.get("panels") or [])


def _layers(panels: list) -> Iterable[tuple[int, dict]]:
    """(layer, panel): the dashboard's top level is layer 0; a collapsed row's panels are a layer
    of their own (Grafana lays them out below the row header when it is opened)."""
    for index, panel in enumerate(panels, start=1):
        yield 0, panel
        for nested in _all_panels(panel.get("panels") or []):
            yield index, nested


def _overlaps(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def check_dashboard(path: Path, known: frozenset[str]) -> list[str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [f"{path}: cannot be read as JSON: {exc}"]
    problems = []
    if data.get("schemaVersion", 0) < MIN_SCHEMA_VERSION:
        problems.append(f"{path}: schemaVersion {data.get('schemaVersion')} is older than {MIN_SCHEMA_VERSION}")
    if not data.get("uid"):
        problems.append(f"{path}: dashboard has no uid")
    variables = {v.get("name"): v for v in (data.get("templating") or {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource":
        problems.append(f"{path}: no datasource variable")
    if "cluster" not in variables:
        problems.append(f"{path}: no cluster variable")
    if not data.get("links"):
        problems.append(f"{path}: no links to the other dashboards")
    for name, variable in variables.items():
        query = variable.get("definition") or variable.get("query")
        if variable.get("type") == "query" and isinstance(query, str):
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            if inner:
                problems += check_expr(substitute_grafana_variables(inner.group(1)), known, f"{path}: variable {name}")
    ids: dict[int, str] = {}
    placed: list[tuple[int, str, dict]] = []
    for layer, panel in _layers(data.get("panels") or []):
        title = panel.get("title", "")
        where = f"{path}: panel {title!r}"
        kind = panel.get("type")
        if kind in REMOVED_PANEL_TYPES:
            problems.append(f"{where}: panel type {kind!r} was removed from Grafana")
        elif kind not in ALLOWED_PANEL_TYPES:
            problems.append(f"{where}: panel type {kind!r} is not allowed")
        panel_id = panel.get("id")
        if panel_id in ids:
            problems.append(f"{where}: panel id {panel_id} is also used by {ids[panel_id]!r}")
        ids[panel_id] = title
        pos = panel.get("gridPos") or {}
        if not all(isinstance(pos.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append(f"{where}: gridPos {pos} is incomplete")
        else:
            if pos["x"] < 0 or pos["y"] < 0 or pos["w"] < 1 or pos["h"] < 1 or pos["x"] + pos["w"] > GRID_COLUMNS:
                problems.append(f"{where}: gridPos {pos} is outside the {GRID_COLUMNS}-column grid")
            for other_layer, other_title, other in placed:
                if other_layer == layer and _overlaps(pos, other):
                    problems.append(f"{where}: overlaps panel {other_title!r}")
            placed.append((layer, title, pos))
        for target in panel.get("targets") or []:
            expr = target.get("expr", "")
            for value in _MATCHER_VALUE.findall(expr):
                for name in _VARIABLE_NAME.findall(value):
                    if name not in variables and name not in GRAFANA_BUILTIN_VARIABLES:
                        problems.append(f"{where}: uses undefined variable ${name}: {expr}")
            if _FIXED_RATE_WINDOW.search(expr):
                problems.append(f"{where}: rate over a fixed window; use $__rate_interval: {expr}")
            problems += check_expr(substitute_grafana_variables(expr), known, where)
    return problems


def _known_metrics(mesh: str, recorded: set[str]) -> frozenset[str]:
    dialect = DIALECTS.get(mesh)
    catalogue = dialect.catalogue() if dialect else frozenset()
    return frozenset(catalogue | recorded | BUILTIN_METRICS)


@dataclass
class TreeReport:
    """What `check_tree` looked at and what it found."""

    problems: list[str] = field(default_factory=list)
    dashboards: int = 0
    panels: int = 0
    rule_files: int = 0
    rules: int = 0

    def summary(self) -> str:
        if not (self.dashboards or self.rule_files):
            return "nothing checked"
        return (f"{self.dashboards} dashboards, {self.panels} panels, {self.rule_files} rule files, "
                f"{self.rules} rules")


def check_tree(root: Path) -> list[str]:
    """Check every dashboards/<mesh>/*.json and alerts/<mesh>/*.yaml under `root`."""
    return inspect_tree(root).problems


def inspect_tree(root: Path, skip: set[str] = frozenset()) -> TreeReport:
    """`check_tree` with the counts of what was checked; meshes in `skip` (stale) are not checked."""
    report = TreeReport()
    problems = report.problems
    if not root.exists():
        problems.append(f"{root}: no such folder; run `meshobs build --out {root}` first")
        return report
    if not root.is_dir():
        problems.append(f"{root}: not a folder")
        return report
    meshes = sorted({p.name for kind in ("dashboards", "alerts") for p in (root / kind).glob("*") if p.is_dir()} - skip)
    if not meshes:
        problems.append(f"{root}: no dashboards/<mesh>/ or alerts/<mesh>/ folders in it; "
                        f"run `meshobs build --out {root}`")
        return report
    for mesh in meshes:
        if mesh not in DIALECTS:
            problems.append(f"{root / 'alerts' / mesh}: unknown mesh {mesh!r} (known: {', '.join(DIALECTS)})")
        rule_files = sorted((root / "alerts" / mesh).glob("*.yaml"))
        dashboards = sorted((root / "dashboards" / mesh).glob("*.json"))
        for folder, found, kind in ((root / "alerts" / mesh, rule_files, "*.yaml rule files"),
                                    (root / "dashboards" / mesh, dashboards, "*.json dashboards")):
            if not found:
                what = "is empty" if folder.is_dir() and not any(folder.iterdir()) else (
                    f"has no {kind}" if folder.is_dir() else "is missing")
                problems.append(f"{folder}: {what}")
        # the global roll-ups (alerts/<mesh>/global/) are checked with the per-cluster files they read
        rule_files += sorted((root / "alerts" / mesh).glob("global/*.yaml"))
        # each rule file is read and parsed once, for the recorded names, its checks and its count
        loaded = {path: _load_yaml(path) for path in rule_files}
        known = _known_metrics(mesh, _recorded_names(loaded.values()))
        for path, (data, load_problems) in loaded.items():
            problems += _check_rules(path, data, load_problems, known)
            report.rule_files += 1
            report.rules += _count_rules(data, load_problems)
        uids: dict[str, Path] = {}
        for path in dashboards:
            problems += check_dashboard(path, known)
            report.dashboards += 1
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            report.panels += sum(1 for panel in _all_panels(data.get("panels") or []) if panel.get("type") != "row")
            uid = data.get("uid")
            if uid in uids:
                problems.append(f"{path}: uid {uid!r} is also used by {uids[uid]}")
            uids[uid] = path
    problems += check_ruler_rules(root)
    return report


def _group_field_problems(group: dict, kind: str | None, cluster_label: str) -> list[str]:
    """A deploy/ruler group's fields: each one the kind reads (meshobs/ruler_fields.py), each value
    one its `ruler:` setting accepts, and no group label a rule of the group sets itself."""
    problems = ruler_fields.unknown(list(group), kind)
    for key in [key for key in group if key in ruler_fields.BY_KEY]:
        field = ruler_fields.BY_KEY[key]
        try:
            config.from_dict({"cluster_label": cluster_label, "ruler": {"kind": field.kinds[0], field.setting: group[key]}})
        except ConfigError as exc:
            problems.append(f"field {key!r}: {exc.reason}")
    setters: dict[str, list[str]] = {}
    for rule, label in ruler_fields.shadowed(group):
        setters.setdefault(label, []).append(rule)
    problems += [f"group label {label!r} is set by {len(rules)} of its rules too (first {rules[0]}), whose own "
                 "value wins in every ruler" for label, rules in sorted(setters.items())]
    return problems


def check_ruler_rules(root: Path) -> list[str]:
    """deploy/ruler/rules/*.yaml: each group's fields beyond Prometheus 2's against the ruler table
    for the kind the last build rendered (meshobs/ruler_fields.py, kind from meshobs-build.json),
    and the rules themselves as every rule file is checked (`_check_rules` reads only a group's
    name and rules, so the fields need not be taken out first)."""
    paths = sorted((root / "deploy" / "ruler" / "rules").glob("*.yaml"))
    built = manifest.read(root)
    kind = built.ruler_kind if built and built.ruler_kind in ruler_fields.KINDS else None
    cluster_label = built.cluster_label if built else config.Config().cluster_label
    loaded = {path: _load_yaml(path) for path in paths}
    # one ruler evaluates every mesh's files: a rule may read what any of them records
    known = frozenset(set().union(*(_known_metrics(mesh, set()) for mesh in DIALECTS)) | _recorded_names(loaded.values()))
    problems = []
    for path, (data, load_problems) in loaded.items():
        if not load_problems and isinstance(data, dict) and isinstance(data.get("groups"), list):
            for group in data["groups"]:
                if isinstance(group, dict):
                    problems += [f"{path}: group {group.get('name')!r}: {problem}"
                                 for problem in _group_field_problems(group, kind, cluster_label)]
        problems += _check_rules(path, data, load_problems, known)
    return problems


def _count_rules(data: object, load_problems: list[str]) -> int:
    if load_problems or not isinstance(data, dict):
        return 0
    return sum(len(group.get("rules") or []) for group in data.get("groups") or [] if isinstance(group, dict))
