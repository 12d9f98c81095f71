"""How a command's answer is printed: aligned tables (`-o table`, `-o wide`) or one document
(`-o json`, `-o yaml`) whose keys are stable and documented in docs/cli.md."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from meshobs import yamlfmt

FORMATS = ("table", "wide", "json", "yaml")
SCHEMA = "meshobs.query/v1"
MISSING = "-"


@dataclass(frozen=True)
class Column:
    header: str
    key: str  # dotted path into a row
    show: Callable[[Any], str] = str
    wide: bool = False  # only in `-o wide`


@dataclass
class Table:
    name: str  # the document key holding these rows
    title: str  # printed above the table when a report has several
    columns: tuple[Column, ...]
    rows: list[dict] = field(default_factory=list)
    empty: str = "no data"
    shown: bool = True  # printed by -o table/wide (always in the json/yaml document)


@dataclass
class Report:
    kind: str
    window: str
    at: str  # RFC 3339 evaluation time
    tables: list[Table]
    summary: dict = field(default_factory=dict)  # extra top-level keys (verdicts)
    lines: list[str] = field(default_factory=list)  # printed under the tables

    def document(self) -> dict:
        doc: dict = {"schema": SCHEMA, "kind": self.kind, "window": self.window, "evaluated_at": self.at}
        doc.update(self.summary)
        for table in self.tables:
            doc[table.name] = table.rows
        return doc


def edge_columns(*values: Column) -> tuple[Column, ...]:
    """Columns of a source -> destination workload table, then `values`."""
    return (Column("CLUSTER", "cluster", wide=True), Column("FROM", "source_workload"),
            Column("FROM NAMESPACE", "source_namespace"), Column("TO", "workload"),
            Column("TO NAMESPACE", "namespace"), Column("MESH", "mesh"), *values)


def _value(row: dict, key: str) -> Any:
    value: Any = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(column: Column, row: dict) -> str:
    value = _value(row, column.key)
    return MISSING if value is None or value == "" else column.show(value)  # "": a label the series lacks


def _table(table: Table, wide: bool) -> list[str]:
    columns = [c for c in table.columns if wide or not c.wide]
    cells = [[c.header for c in columns]] + [[_cell(c, row) for c in columns] for row in table.rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in cells]
    return lines if table.rows else [table.empty]


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.document(), indent=2) + "\n"
    if fmt == "yaml":
        return yamlfmt.dump(report.document())
    out: list[str] = []
    shown = [table for table in report.tables if table.shown]
    for table in shown:
        if len(shown) > 1:
            out.append(f"{table.title}:" if out == [] else f"\n{table.title}:")
        out += _table(table, fmt == "wide")
    out += report.lines
    return "\n".join(out) + "\n"


def render_compact(report: Report) -> str:
    """One JSON document on one line: a `--watch` frame of `-o json` (newline-delimited JSON)."""
    return json.dumps(report.document(), separators=(",", ":")) + "\n"


# Cell formats: short and unit-bearing, like `linkerd viz stat`.
def percent(value: float) -> str:
    return f"{value * 100:.2f}%"


def per_second(value: float) -> str:
    return f"{value:.2f}/s" if value >= 0.01 or value == 0 else f"{value:.2g}/s"


def seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f}ms" if value >= 0.001 else f"{value * 1000:.2g}ms"
    return f"{value:.2f}s"


def duration(value: float) -> str:
    """Time left, e.g. 19h58m, 6d3h, -2h5m (expired)."""
    sign, value = ("-", -value) if value < 0 else ("", value)
    days, rest = divmod(int(value), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{sign}{days}d{hours}h"
    return f"{sign}{hours}h{minutes}m" if hours else f"{sign}{minutes}m"
