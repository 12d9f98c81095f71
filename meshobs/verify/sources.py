"""What `meshobs verify` runs: every panel query of the rendered dashboards and every rule
expression of the rendered rule files, each with enough context to be named in a failure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from meshobs.errors import VerifyError


@dataclass(frozen=True)
class Variable:
    """A Grafana template variable as far as verify needs it."""

    name: str
    kind: str  # query | datasource | custom | constant | interval | textbox
    query: str
    multi: bool
    include_all: bool
    all_value: str | None


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it lives: `source` is the file, `title` the dashboard
    title or rule group, `item` the panel title or rule name."""

    mesh: str
    kind: str  # panel | record | alert
    source: str
    title: str
    item: str
    expr: str
    ref: str = ""
    variables: tuple[Variable, ...] = field(default=(), repr=False)
    # a stable id for the report's file names and the exceptions table
    uid: str = ""
    legend: str = ""
    datasource: str = "prometheus"  # the data source type; others (Loki...) are not run

    @property
    def where(self) -> str:
        what = {"panel": "panel", "record": "recording rule", "alert": "alert"}[self.kind]
        ref = f" [{self.ref}]" if self.ref else ""
        return f"{self.source}: {self.title} / {what} {self.item!r}{ref}"


def _variable(raw: dict) -> Variable:
    query = raw.get("query", "")
    if isinstance(query, dict):
        query = query.get("query", "")
    return Variable(
        name=raw["name"], kind=raw.get("type", "query"), query=str(query or ""),
        multi=bool(raw.get("multi")), include_all=bool(raw.get("includeAll")), all_value=raw.get("allValue") or None,
    )


def _panels(panels: list) -> list[dict]:
    # rows carry their own panels when collapsed; expanded rows leave them at top level
    out = []
    for panel in panels:
        if panel.get("type") == "row":
            out.extend(_panels(panel.get("panels") or []))
        else:
            out.append(panel)
    return out


def _datasource_type(*holders: dict) -> str:
    for holder in holders:
        source = holder.get("datasource")
        if isinstance(source, dict) and source.get("type"):
            return source["type"]
    return "prometheus"


def dashboard_queries(path: Path, mesh: str, root: Path) -> list[Query]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VerifyError(f"{path}: not a Grafana dashboard: {exc}") from exc
    variables = tuple(_variable(v) for v in (document.get("templating") or {}).get("list", []))
    title = document.get("title", path.stem)
    uid = document.get("uid") or path.stem
    queries = []
    for panel in _panels(document.get("panels") or []):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if not expr or target.get("hide"):
                continue
            queries.append(Query(
                mesh, "panel", str(path.relative_to(root)), title, panel.get("title", ""), expr,
                ref=target.get("refId", ""), variables=variables, uid=f"{uid}-{panel.get('id', 0)}",
                legend=target.get("legendFormat", ""), datasource=_datasource_type(target, panel),
            ))
    return queries


def rule_queries(path: Path, mesh: str, root: Path) -> list[Query]:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise VerifyError(f"{path}: not a Prometheus rule file: {exc}") from exc
    queries = []
    for group in document.get("groups") or []:
        for index, rule in enumerate(group.get("rules") or []):
            kind = "record" if "record" in rule else "alert"
            name = rule.get("record") or rule.get("alert", "")
            queries.append(Query(
                mesh, kind, str(path.relative_to(root)), group.get("name", ""), name, rule["expr"],
                uid=f"{group.get('name', '')}-{index}",
            ))
    return queries


def meshes_in(root: Path) -> list[str]:
    found = {p.name for kind in ("dashboards", "alerts") for p in (root / kind).glob("*") if p.is_dir()}
    return sorted(found)


def load(root: Path, meshes: list[str] | None = None) -> list[Query]:
    """Every query under `root` (a `meshobs build --out` folder), dashboards first, sorted by path."""
    selected = meshes or meshes_in(root)
    if not selected:
        raise VerifyError(f"{root}: no dashboards/<mesh>/ or alerts/<mesh>/ folder; run `meshobs build --out {root}`")
    queries: list[Query] = []
    for mesh in selected:
        dashboards = sorted((root / "dashboards" / mesh).glob("*.json"))
        rules = sorted((root / "alerts" / mesh).glob("*.yaml"))
        if not dashboards and not rules:
            raise VerifyError(f"{root}: nothing rendered for mesh {mesh!r}")
        for path in dashboards:
            queries.extend(dashboard_queries(path, mesh, root))
        for path in rules:
            queries.extend(rule_queries(path, mesh, root))
    return queries
