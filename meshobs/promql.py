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
class Derived:
    """A normalized label cut out of a native one: `regex`'s first group is the value;
    `filter` is the native regex that selects a given value (`{value}` is replaced)."""

    native: str
    regex: str
    filter: str

    def matcher(self, op: str, value: str) -> str:
        if op not in ("=", "=~"):
            raise ValueError(f"derived label {self.native} supports only = and =~ filters")
        return f'{self.native}=~"{self.filter.format(value=value)}"'


@dataclass(frozen=True)
class Source:
    """Where a mesh keeps one number.

    `labels` maps normalized label -> native label (a name, or `Derived`); a normalized label
    with a fixed value (a TLS failure reason) is given in `constant_labels`. `facets` are named
    native matchers a signal may ask for: "5xx", "403", "mtls", "plaintext"."""

    metric: str | tuple[str, ...]  # several names are summed together
    matchers: tuple[str, ...] = ()
    labels: Mapping[str, str | Derived] = field(default_factory=dict)
    constant_labels: Mapping[str, str] = field(default_factory=dict)
    facets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    scale: float = 1.0  # multiply the native unit by this to get the signal's unit
    origin: str = "native"  # or "exporter": picks which user selector applies (config `selectors`)

    def has(self, facet: str) -> bool:
        return facet in self.facets

    def narrowed(self, facet: str) -> "Source":
        """This source restricted to one facet for good (e.g. only the plaintext requests)."""
        return replace(self, matchers=self.matchers + self.facets[facet], facets={})

    def metric_names(self) -> tuple[str, ...]:
        return (self.metric,) if isinstance(self.metric, str) else self.metric


@dataclass(frozen=True)
class Filters:
    """Normalized label filters: label -> regex (dashboard variables)."""

    regex: Mapping[str, str] = field(default_factory=dict)


def _native_matchers(source: Source, filters: Filters | None, facet: str | None, extra: str, cluster_label: str) -> list[str]:
    matchers = list(source.matchers)
    if facet:
        if facet not in source.facets:
            raise KeyError(f"{source.metric} has no facet {facet!r}")
        matchers.extend(source.facets[facet])
    for label, value in (filters.regex if filters else {}).items():
        if label == cluster_label:
            matchers.append(f'{label}=~"{value}"')
            continue
        if label in source.constant_labels:
            continue  # constant labels are filtered after normalization
        native = source.labels.get(label)
        if native is None:
            continue  # this source cannot tell; it keeps all its series
        if isinstance(native, Derived):
            matchers.append(native.matcher("=~", value))
        else:
            matchers.append(f'{native}=~"{value}"')
    if extra:
        matchers.append(extra)
    return matchers


def selector(source: Source, filters: Filters | None = None, facet: str | None = None, extra: str = "", cluster_label: str = "cluster") -> str:
    matchers = _native_matchers(source, filters, facet, extra, cluster_label)
    names = source.metric_names()
    if len(names) > 1:
        return f'{{__name__=~"{"|".join(names)}", {", ".join(matchers)}}}' if matchers else f'{{__name__=~"{"|".join(names)}"}}'
    return f"{names[0]}{{{', '.join(matchers)}}}" if matchers else names[0]


def _normalize(expr: str, source: Source, by: Sequence[str]) -> str:
    """Wrap `expr` in label_replace calls so it carries normalized labels."""
    for label in by:
        if label in source.constant_labels:
            expr = f'label_replace({expr}, "{label}", "{source.constant_labels[label]}", "", "")'
            continue
        native = source.labels.get(label)
        if native is None or native == label:
            continue
        if isinstance(native, Derived):
            expr = f'label_replace({expr}, "{label}", "$1", "{native.native}", "{native.regex}")'
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
    the same labelset")."""
    names = source.metric_names()
    calls = []
    for name in names:
        one = replace(source, metric=name)
        call = f"{func}({selector(one, query.filters, facet, extra, query.cluster_label)}[{query.window}])"
        calls.append(call if len(names) == 1 else f'label_replace({call}, "metric_name", "{name}", "", "")')
    return calls[0] if len(calls) == 1 else "(" + " or ".join(calls) + ")"


def rate(sources: Iterable[Source], query: Query, facet: str | None = None, extra: Extra | None = None, func: str = "rate") -> str:
    """Per-second rate of the sources, summed by the normalized labels; alternatives joined by `or`
    (the first source that has series for a label set wins)."""
    parts = []
    for source in sources:
        if facet and not source.has(facet):
            continue
        inner = _range_function(func, source, query, facet, _extra(extra, source))
        parts.append(f"{_aggregate('sum', query.by)}({_normalize(_scaled(inner, source.scale), source, query.by)})")
    return _alternatives(parts)


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
