"""Grafana template variables substituted the way Grafana does it for a Prometheus data source,
with values that exist in the data (each variable's own `label_values(...)` query)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshobs.verify.sources import Variable

# Grafana's own variable syntax: $name, [[name]] / [[name:fmt]], ${name} / ${name:fmt}.
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*(\w+)\s*\)\s*$", re.DOTALL)
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]])")


class VariableError(Exception):
    """A variable's query cannot give a value; every query of its dashboard fails with this.
    `selector`: the variable's selector that matched nothing, where that is the cause."""

    def __init__(self, message: str, selector: str | None = None):
        super().__init__(message)
        self.selector = selector


@dataclass(frozen=True)
class Timing:
    """The time context Grafana gives a query: scrape interval, step and dashboard range, seconds."""

    scrape: float
    step: float
    range: float

    @property
    def rate_interval(self) -> float:
        # Grafana: max($__interval + scrape interval, 4 * scrape interval)
        return max(self.step + self.scrape, 4 * self.scrape)

    def builtins(self) -> dict[str, str]:
        return {
            "__rate_interval": _duration(self.rate_interval),
            "__interval": _duration(self.step),
            "__interval_ms": str(int(self.step * 1000)),
            "__range": _duration(self.range),
            "__range_s": str(int(self.range)),
            "__range_ms": str(int(self.range * 1000)),
        }


def _duration(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms" if seconds < 1 or seconds != int(seconds) else f"{int(seconds)}s"


def _regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(r"\\\1", value)


def format_values(variable: Variable, values: list[str]) -> str:
    """What Grafana writes into a query for the variable's selected values (all of them:
    the view a dashboard opens with when the variable includes All)."""
    if variable.include_all and variable.all_value is not None:
        return variable.all_value
    if variable.multi or variable.include_all:
        escaped = [_regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    return values[0]


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace known variables; unknown ones stay as written, as Grafana leaves them."""

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        return values.get(name, match.group(0))

    return _VARIABLE.sub(replace, text)


def resolve(variables: tuple[Variable, ...], prometheus, timing: Timing, end: float) -> dict[str, str]:
    """Values for every variable, in dashboard order (a variable's query may use earlier ones).
    Raises VariableError naming the variable when its query finds nothing to choose."""
    values = dict(timing.builtins())
    for variable in variables:
        if variable.kind == "datasource":
            values[variable.name] = "prometheus"
        elif variable.kind in ("custom", "constant", "interval", "textbox"):
            first = variable.query.split(",")[0].strip()
            values[variable.name] = first
        else:
            values[variable.name] = _query_variable(variable, values, prometheus, timing, end)
    return values


def _query_variable(variable: Variable, values: dict[str, str], prometheus, timing: Timing, end: float) -> str:
    query = substitute(variable.query, values)
    match = _LABEL_VALUES.match(query)
    if not match:
        raise VariableError(f"variable ${variable.name}: only label_values(...) queries are supported, got {query!r}")
    selector, label = match.group(1), match.group(2)
    selector = selector.strip() if selector else None
    found = prometheus.label_values(label, selector, end - timing.range, end)
    if not found:
        if selector and prometheus.instant(f"count({selector})", end):
            # the series are there, the label is not: a scrape mistake, not missing data
            raise VariableError(f"${variable.name} has no values: {selector} has series, none with the label {label} "
                                f"(docs/labels.md says what sets it)")
        raise VariableError(f"${variable.name} has no values: {query} is empty", selector)
    return format_values(variable, found)
