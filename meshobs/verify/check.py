"""Run each query against Prometheus and judge it: an error, a query without series, a selector
inside it that matches nothing (which `or vector(0)` would otherwise hide), or a range window too
short for the scrape interval."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import promql_parser

from meshobs.checks import metric_names
from meshobs.labels import normalized_from
from meshobs.meshes import DIALECTS
from meshobs.verify import exceptions
from meshobs.verify.promapi import Prometheus, QueryError
from meshobs.verify.sources import Query
from meshobs.verify.variables import Timing, VariableError, resolve, substitute


@dataclass
class Outcome:
    query: Query
    expr: str
    problems: list[str] = field(default_factory=list)
    excused: list[str] = field(default_factory=list)
    # the instant query's result, as the API returns it
    result: list[dict] = field(default_factory=list)
    # [(labels, [(t, v), ...]), ...] from the range query, for the report
    lines: list[tuple[dict, list[tuple[float, float]]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def selectors(expr: str) -> list[str]:
    """Every instant/range vector selector in `expr`, as text, in order, without repeats."""
    return _parts(expr)[0]


def _parts(expr: str) -> tuple[list[str], list[float]]:
    """(selectors, range-vector windows in seconds) of `expr`."""
    found: list[str] = []
    windows: list[float] = []

    def visit(node) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            text = str(node).removesuffix("{}")  # the parser prints `name{}` for a bare name
            if text not in found:
                found.append(text)
        elif isinstance(node, promql_parser.MatrixSelector):
            windows.append(node.range.total_seconds())
        return True

    promql_parser.walk(promql_parser.parse(expr), visit, lambda node: True)
    return found, windows


def grouping_labels(expr: str) -> list[str]:
    """The `by (...)` labels of the aggregation the expression ends in, if it ends in one."""
    try:
        node = promql_parser.parse(expr)
    except ValueError:
        return []
    modifier = getattr(node, "modifier", None) if isinstance(node, promql_parser.AggregateExpr) else None
    if modifier is None or str(modifier.type) != "AggModifierType.By":
        return []
    return list(modifier.labels)


class Checker:
    def __init__(self, prometheus: Prometheus, timing: Timing, at: float | None = None, with_ranges: bool = False):
        self.prometheus = prometheus
        self.timing = timing
        self.at = at if at is not None else time.time()
        self.with_ranges = with_ranges
        self._variables: dict[str, dict[str, str] | VariableError] = {}
        # the same selector appears in many panels and rules: ask once
        self._selectors: dict[str, bool | QueryError] = {}

    def _values(self, query: Query) -> dict[str, str]:
        if query.source not in self._variables:
            try:
                self._variables[query.source] = resolve(query.variables, self.prometheus, self.timing, self.at)
            except VariableError as exc:
                self._variables[query.source] = exc
        values = self._variables[query.source]
        if isinstance(values, VariableError):
            raise values
        return values

    def check(self, query: Query) -> Outcome:
        outcome = Outcome(query, query.expr)
        if query.datasource != "prometheus":
            outcome.excused.append(f"not run: a {query.datasource} query, not PromQL")
            return outcome
        try:
            if query.kind == "panel":
                outcome.expr = substitute(query.expr, self._values(query))
            result = self.prometheus.instant(outcome.expr, self.at)
        except VariableError as exc:
            # a dashboard of a data plane the mesh does not run has no values to choose: declared, not failed
            self._judge(outcome, exc.selector, str(exc))
            return outcome
        except QueryError as exc:
            outcome.problems.append(f"query failed: {exc}")
            return outcome
        outcome.result = result
        if query.kind == "record":
            self._judge_labels(outcome)
        empty = self._empty_selectors(outcome)
        # an alert expression is empty whenever nothing fires: its selectors are judged instead
        if not result and query.kind != "alert":
            self._judge_empty_result(outcome, empty)
        for selector in empty:
            self._judge(outcome, selector, f"selector {selector} matches no series")
        if self.with_ranges and query.kind == "panel":
            self._fetch_range(outcome)
        return outcome

    def _judge_labels(self, outcome: Outcome) -> None:
        """A recording rule groups by labels the scraped series must carry (those its mesh's
        sources map from a native label); a series without one is a second, unlabelled copy of
        every alert and an empty dashboard variable."""
        dialect = DIALECTS.get(outcome.query.mesh)
        if dialect is None or not outcome.result:
            return
        try:
            required = normalized_from(dialect, metric_names(outcome.expr))
        except ValueError:
            return
        for label in grouping_labels(outcome.expr):
            if label in required and any(not series["metric"].get(label) for series in outcome.result):
                outcome.problems.append(f"series without the label {label}, which the rule groups by: the scrape "
                                        f"or the proxy must provide it (docs/labels.md)")

    def _judge_empty_result(self, outcome: Outcome, empty_selectors: list[str]) -> None:
        """A query is allowed to be empty when it is declared so, or when it is empty only
        because of selectors declared empty by design (no 403 in the window...)."""
        reasons = [exceptions.excuse(outcome.query, s, self._present) for s in empty_selectors]
        if empty_selectors and all(reasons):
            outcome.excused.append(f"returns no series (expected: {reasons[0]})")
        else:
            self._judge(outcome, None, "returns no series")

    def _judge(self, outcome: Outcome, selector: str | None, problem: str) -> None:
        reason = exceptions.excuse(outcome.query, selector, self._present)
        if reason:
            outcome.excused.append(f"{problem} (expected: {reason})")
        else:
            outcome.problems.append(problem)

    def _empty_selectors(self, outcome: Outcome) -> list[str]:
        """The query's selectors that match nothing; windows too short and selectors Prometheus
        rejects are recorded as problems."""
        try:
            found, windows = _parts(outcome.expr)
        except ValueError as exc:
            # Prometheus accepted the query; the parser is stricter in places: say so, do not fail
            outcome.excused.append(f"selectors not checked: promql-parser: {exc}")
            return []
        for window in sorted(set(windows)):
            # rate() and friends need two samples inside the window, or they return nothing
            if window < 2 * self.timing.scrape:
                outcome.problems.append(f"range [{window:g}s] is shorter than two scrape intervals "
                                        f"({self.timing.scrape:g}s each): empty whenever it holds one sample")
        empty = []
        for selector in found:
            matched = self._selector_matches(selector)
            if isinstance(matched, QueryError):
                outcome.problems.append(f"selector {selector} failed: {matched}")
            elif not matched:
                empty.append(selector)
        return empty

    def _present(self, selector: str) -> bool:
        return self._selector_matches(selector) is True

    def _selector_matches(self, selector: str) -> bool | QueryError:
        if selector not in self._selectors:
            try:
                self._selectors[selector] = bool(self.prometheus.instant(f"count({selector})", self.at))
            except QueryError as exc:
                self._selectors[selector] = exc
        return self._selectors[selector]

    def _fetch_range(self, outcome: Outcome) -> None:
        start = self.at - self.timing.range
        try:
            result = self.prometheus.range(outcome.expr, start, self.at, self.timing.step)
        except QueryError as exc:
            outcome.problems.append(f"range query failed: {exc}")
            return
        outcome.lines = [
            (series["metric"], [(float(t), float(v)) for t, v in series["values"]]) for series in result
        ]


def run(queries: list[Query], checker: Checker, progress=None) -> list[Outcome]:
    outcomes = []
    for query in queries:
        outcomes.append(checker.check(query))
        if progress is not None:
            progress(outcomes[-1])
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    failed = sum(1 for o in outcomes if not o.ok)
    excused = sum(1 for o in outcomes if o.excused)
    return f"{len(outcomes)} queries: {len(outcomes) - failed} ok, {failed} failed, {excused} with declared exceptions"
