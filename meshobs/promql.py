"""PromQL built from sources: the one place where query text is assembled.

A `Source` says where a mesh keeps one kind of number: the metric, the matchers that select the
right series, and how its native labels map to meshobs's normalized labels (`destination_service`,
`source_workload`, ...). The functions here turn sources into normalized, aggregated PromQL, so
that every renderer speaks in normalized labels and no mesh's label names leak past its dialect.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

@dataclass(frozen=True)
class FirstOf:
    """A normalized label taken from the first of several native labels that a series has set
    (Linkerd names a pod's owner `deployment`, `statefulset`, `daemonset`, ... by its kind)."""

    natives: tuple[str, ...]


@dataclass(frozen=True)
class Cut:
    """A normalized label cut out of a native one: each regex's first group is a value, the last
    regex that matches winning (a workload out of a pod's name); `filter` is the native regex
    selecting a given value (`{value}` is replaced)."""

    native: str
    regexes: tuple[str, ...]
    filter: str


@dataclass(frozen=True)
class AnyOf:
    """A facet met by any of several sets of matchers. The sets select disjoint series (an
    HTTP 5xx, or an HTTP 200 carrying a failed gRPC status), so their rates add up."""

    alternatives: tuple[tuple[str, ...], ...]


Facet = tuple[str, ...] | AnyOf


@dataclass(frozen=True)
class Source:
    """Where a mesh keeps one number.

    `labels` maps normalized label -> native label (a name, a `FirstOf` or a `Cut`); a normalized label
    with a fixed value (a TLS failure reason) is given in `constant_labels`. `facets` are named
    native matchers a signal may ask for: "error", "403", "plaintext"."""

    metric: str | tuple[str, ...]  # several names are summed together
    matchers: tuple[str, ...] = ()
    labels: Mapping[str, str | FirstOf | Cut] = field(default_factory=dict)
    constant_labels: Mapping[str, str] = field(default_factory=dict)
    facets: Mapping[str, Facet] = field(default_factory=dict)
    scale: float = 1.0  # multiply the native unit by this to get the signal's unit
    origin: str = "native"  # or "exporter": picks which user selector applies (config `selectors`)

    def has(self, facet: str) -> bool:
        return facet in self.facets

    def narrowed(self, facet: str) -> "Source":
        """This source restricted to one facet for good (e.g. only the plaintext requests)."""
        matchers = self.facets[facet]
        assert not isinstance(matchers, AnyOf), f"{self.metric}: facet {facet} has alternatives"
        return replace(self, matchers=self.matchers + matchers, facets={})

    def metric_names(self) -> tuple[str, ...]:
        return (self.metric,) if isinstance(self.metric, str) else self.metric


@dataclass(frozen=True)
class Filters:
    """Normalized label filters: label -> regex (dashboard variables)."""

    regex: Mapping[str, str] = field(default_factory=dict)


def _native_matchers(source: Source, filters: Filters | None, facet: str | None, extra: str, cluster_label: str) -> list[list[str]]:
    """The matcher sets selecting the source's series: one set, or several whose series are
    disjoint (a facet with alternatives, a filter on a label kept in one of several natives)."""
    alternatives = [list(source.matchers)]

    def each(options: list[tuple[str, ...]]) -> None:
        nonlocal alternatives
        alternatives = [base + list(option) for base in alternatives for option in options]

    if facet:
        if facet not in source.facets:
            raise KeyError(f"{source.metric} has no facet {facet!r}")
        chosen = source.facets[facet]
        each(list(chosen.alternatives) if isinstance(chosen, AnyOf) else [chosen])
    for label, value in (filters.regex if filters else {}).items():
        if label == cluster_label:
            each([(f'{label}=~"{value}"',)])
            continue
        if label in source.constant_labels:
            continue  # constant labels are filtered after normalization
        native = source.labels.get(label)
        if native is None:
            continue  # this source cannot tell; it keeps all its series
        if isinstance(native, FirstOf):
            each([(f'{name}=~"{value}"',) for name in native.natives])
        elif isinstance(native, Cut):
            each([(f'{native.native}=~"{native.filter.format(value=value)}"',)])
        else:
            each([(f'{native}=~"{value}"',)])
    if extra:
        each([(extra,)])
    return alternatives


def _selector_text(names: tuple[str, ...], matchers: list[str]) -> str:
    if len(names) > 1:
        return f'{{__name__=~"{"|".join(names)}", {", ".join(matchers)}}}' if matchers else f'{{__name__=~"{"|".join(names)}"}}'
    return f"{names[0]}{{{', '.join(matchers)}}}" if matchers else names[0]


def selectors(source: Source, filters: Filters | None = None, facet: str | None = None, extra: str = "",
              cluster_label: str = "cluster") -> list[str]:
    """One selector per matcher set of the source (their series are disjoint)."""
    names = source.metric_names()
    return [_selector_text(names, m) for m in _native_matchers(source, filters, facet, extra, cluster_label)]


def selector(source: Source, filters: Filters | None = None, facet: str | None = None, extra: str = "", cluster_label: str = "cluster") -> str:
    """An instant-vector selector of the source; several matcher sets become a union (`or`)."""
    return union(selectors(source, filters, facet, extra, cluster_label))


def union(parts: list[str]) -> str:
    """Disjoint sets of series as one vector."""
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def _normalize(expr: str, source: Source, by: Sequence[str]) -> str:
    """Wrap `expr` in label_replace calls so it carries normalized labels."""
    for label in by:
        if label in source.constant_labels:
            expr = f'label_replace({expr}, "{label}", "{source.constant_labels[label]}", "", "")'
            continue
        native = source.labels.get(label)
        if native is None or native == label:
            continue
        if isinstance(native, FirstOf):
            # the first native that is set wins: apply the others first, it last
            for name in reversed(native.natives):
                expr = f'label_replace({expr}, "{label}", "$1", "{name}", "(.+)")'
        elif isinstance(native, Cut):
            for regex in native.regexes:
                expr = f'label_replace({expr}, "{label}", "$1", "{native.native}", "{regex}")'
        else:
            expr = f'label_replace({expr}, "{label}", "$1", "{native}", "(.*)")'
    return expr


def _extra(extra: Extra | None, source: Source) -> str:
    return (extra or {}).get(source.origin, "")


def _aggregate(operation: str, by: Sequence[str]) -> str:
    return f"{operation} by ({', '.join(by)}) " if by else f"{operation} "


def _alternatives(parts: list[str]) -> str:
    """Sources that answer the same question, the first with series for a label set winning."""
    if not parts:
        raise ValueError("no source can answer this query")
    return parts[0] if len(parts) == 1 else " or ".join(f"({p})" for p in parts)


def _scaled(expr: str, scale: float) -> str:
    return expr if scale == 1 else f"{expr} * {scale:g}"


@dataclass(frozen=True)
class Query:
    """How to ask: aggregation labels, window, filters; shared by rules and dashboards."""

    by: tuple[str, ...]
    window: str
    filters: Filters | None = None
    cluster_label: str = "cluster"


Extra = Mapping[str, str]  # origin ("native" / "exporter") -> extra matchers from the config


def _range_function(func: str, source: Source, query: Query, facet: str | None, extra: str) -> str:
    """`func(selector[window])` for one source. A source of several metrics gets one call per
    metric, told apart by a `metric_name` label: rate() drops `__name__`, and series of two
    metrics with the same labels would otherwise collide ("vector cannot contain metrics with
    the same labelset"). Several matcher sets select disjoint series: their calls are a union."""
    names = source.metric_names()
    calls = []
    for name in names:
        one = replace(source, metric=name)
        for sel in selectors(one, query.filters, facet, extra, query.cluster_label):
            if func == "lazy_increase":
                call = lazy_increase(sel, query.window)
            else:
                call = f"{func}({sel}[{query.window}])"
            calls.append(call if len(names) == 1 else f'label_replace({call}, "metric_name", "{name}", "", "")')
    return union(calls)


def rate(sources: Iterable[Source], query: Query, facet: str | None = None, extra: Extra | None = None, func: str = "rate",
         combine: str = "first") -> str:
    """Per-second rate of the sources, summed by the normalized labels. `combine` says how the
    sources' answers meet: "first" (the first source with series for a label set wins: the
    exporter before the proxy's own metrics) or "largest" (both ends of a call count the same
    requests: the larger count per label set, never the sum)."""
    parts = []
    for source in sources:
        if facet and not source.has(facet):
            continue
        inner = _range_function(func, source, query, facet, _extra(extra, source))
        parts.append(f"{_aggregate('sum', query.by)}({_normalize(_scaled(inner, source.scale), source, query.by)})")
    if combine == "largest" and len(parts) > 1:
        return greatest(parts, query.by)
    return _alternatives(parts)


def lazy_increase(sel: str, window: str) -> str:
    """Increase over the window of a counter that is born on its first event (Istio's
    `pilot_total_xds_rejects` starts at 1): increase() ignores the value a series is born with,
    so a series that did not exist a window ago counts with its whole value."""
    return f"(({sel} unless {sel} offset {window}) or increase({sel}[{window}]))"


def greatest(parts: list[str], by: Sequence[str]) -> str:
    """Per label set the largest of several vectors, or whichever exists where only one does:
    each told apart by an `end` label so that `or` keeps them all, then the max by `by`."""
    tagged = [f'label_replace({part}, "end", "{index}", "", "")' for index, part in enumerate(parts)]
    return f"{_aggregate('max', by)}({' or '.join(tagged)})"


def ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator per label set, within [0, 1]: 0 where the numerator has no series
    (a service that never failed), no value where the denominator is 0 (an idle service has no
    ratio, rather than NaN)."""
    return f"clamp(({numerator} or {denominator} * 0) / ({denominator} > 0), 0, 1)"


def ratio_of_sums(numerator: str, denominator: str, when_idle: float) -> str:
    """sum(numerator) / sum(denominator) as one number: within [0, 1], 0 for a numerator without
    series, `when_idle` while the denominator is 0 or absent; never NaN, never empty."""
    return f"clamp((sum({numerator}) or vector(0)) / (sum({denominator}) > 0), 0, 1) or vector({when_idle:g})"


def or_value(expr: str, value: float) -> str:
    """`expr`, or `value` as one series where it has none (a stat that must show a number)."""
    return f"{expr} or vector({value:g})"


def or_fallback(expr: str, fallback: str, ignoring: Sequence[str] = ()) -> str:
    """Per label set `expr`, else `fallback` (label sets where expr has no series), label sets
    compared without the `ignoring` labels."""
    op = f"or ignoring({', '.join(ignoring)})" if ignoring else "or"
    return f"({expr}) {op} ({fallback})"


def copy_labels(expr: str, copies: Mapping[str, str]) -> str:
    """`expr` with label `target` set to the value of label `source`, for each target: source."""
    for target, source in copies.items():
        expr = f'label_replace({expr}, "{target}", "$1", "{source}", "(.*)")'
    return expr


def unless_present(expr: str, present: str, on: Sequence[str]) -> str:
    """`expr` without the label sets (matched on `on`) that `present` has."""
    return f"({expr}) unless on({', '.join(on)}) ({present})"


def gauge(sources: Iterable[Source], query: Query, aggregation: str = "min", extra: Extra | None = None) -> str:
    """A gauge aggregated by the normalized labels, alternatives joined by `or`."""
    parts = []
    for source in sources:
        inner = _scaled(selector(source, query.filters, None, _extra(extra, source), query.cluster_label), source.scale)
        parts.append(f"{_aggregate(aggregation, query.by)}({_normalize(inner, source, query.by)})")
    return _alternatives(parts)


def histogram_quantile(quantile: float, source: Source, query: Query, extra: Extra | None = None) -> str:
    """Quantile from a histogram's buckets, in the signal's unit (the source's `scale`)."""
    inner = _range_function("rate", source, query, None, _extra(extra, source))
    expr = f"histogram_quantile({quantile:g}, {_aggregate('sum', tuple(query.by) + ('le',))}({_normalize(inner, source, query.by)}))"
    return _scaled(expr, source.scale)


def average_over(expr: str, window: str, evaluations: float) -> str:
    """A recorded rate averaged over a longer window of `evaluations` rule evaluations: a rate
    over that window, read from the recorded series instead of the raw counters. Summed and
    divided by the evaluations, not avg_over_time: a series born half-way through the window
    (the first error) must not count as if it had lasted the whole window."""
    return f"sum_over_time({expr}[{window}]) / {evaluations:g}"


def highest_over(expr: str, window: str) -> str:
    """The highest sample of a recorded quantile over a longer window (max_over_time skips the
    NaN an idle interval records, where avg_over_time would return NaN)."""
    return f"max_over_time({expr}[{window}])"


def missing_per_group(required: str, present: str, by: str, labels: Mapping[str, str]) -> str:
    """The `by` groups (clusters) that have `present` but not `required`, carrying `labels` as
    absent() would; or `required` absent everywhere while `present` is absent too. absent()
    alone, over a store of many clusters, fires only when `required` is gone from all of them."""
    per_group = f"group by ({by}) ({present}) unless on ({by}) group by ({by}) ({required})"
    for label, value in labels.items():
        per_group = f'label_replace({per_group}, "{label}", "{value}", "", "")'
    return f"{per_group}\nor (absent({required}) unless on () group({present}))"


def gone(sel: str, window: str) -> str:
    """Series of `sel` seen within `window` and not now (a scrape target that disappeared)."""
    return f"max_over_time({sel}[{window}])\nunless {sel}"


def ratio_with_volume(ratio: str, rate: str, threshold: float, seconds: float, min_count: float) -> str:
    """A recorded ratio above `threshold` where its recorded `rate` amounted to at least `min_count`
    events over the window of `seconds` (a count, not a rate: a quiet service is judged too, and an
    idle one, whose ratio has no value, never)."""
    return f"{ratio} > {threshold:g}\nand {rate} * {seconds:g} >= {min_count:g}"


def labels_differ(expr: str, first: str, second: str) -> str:
    """`expr` without its series whose labels `first` and `second` hold the same value (a pair of
    one cluster). PromQL cannot compare two labels of a series: each value of `first` is made a
    (first, second) pair of equal ends and those pairs are removed; grouped first, so that the
    copies cannot collide."""
    same = f'label_replace(group by ({first}) ({expr}), "{second}", "$1", "{first}", "(.*)")'
    return f"(({expr}) unless on ({first}, {second}) {same})"
