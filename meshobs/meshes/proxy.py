"""What a sidecar proxy's own exposition means in meshobs terms, for the exporter.

A mesh's `ProxyMetrics` is a table of `Rule`s; the families it names are also the prefixes the
exporter's parser keeps, so the table is the single place that says what is read. Everything a
rule matches is summed per target (listeners, RBAC prefixes, policies), which keeps the output
at a fixed, small set of series per workload whatever the proxy exposes.

Series per workload (documented bound): 1 handshakes + 5 failure reasons + allowed + denied +
2 dry-run decisions + plaintext + burst gauge + bursts counter + 2 cert expiries + 2 cert notBefores +
5 scrape error reasons = 22, plus `target_up` and `scrape_duration` per scraped target.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol
from urllib.parse import quote


class Sample(Protocol):
    name: str
    labels: dict[str, str]
    value: float


REASONS = ("no_client_cert", "untrusted_cert", "san_mismatch", "not_tls", "other")

HANDSHAKES = "meshobs_tls_handshakes_total"
FAILURES = "meshobs_tls_handshake_failures_total"
ALLOWED = "meshobs_authz_allowed_total"
DENIED = "meshobs_authz_denied_total"
PLAINTEXT = "meshobs_plaintext_requests_total"
# decisions of dry-run / shadow policies: what they would have allowed or denied if enforced
DRY_RUN_ALLOWED = "meshobs_authz_dry_run_allowed_total"
DRY_RUN_DENIED = "meshobs_authz_dry_run_denied_total"
CERT_EXPIRY = "meshobs_cert_expiry_timestamp_seconds"
CERT_NOT_BEFORE = "meshobs_cert_not_before_timestamp_seconds"

# The name memo of `ProxyMetrics.rules_for` is bounded in bytes: at most this many names of at
# most this many characters (~2.5 MB); longer names are matched every time.
NAME_CACHE_ENTRIES = 10_000
NAME_CACHE_MAX_NAME = 200

# A counter key: (meshobs series, reason or "" when the series has no reason).
Key = tuple[str, str]
Match = Callable[[Mapping[str, str]], bool]


def _any(labels: Mapping[str, str]) -> bool:
    return True


def label_is(name: str, value: str) -> Match:
    return lambda labels: labels.get(name) == value


def label_not(name: str, *values: str) -> Match:
    return lambda labels: labels.get(name) not in values


def all_of(*matches: Match) -> Match:
    return lambda labels: all(match(labels) for match in matches)


_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')


def matching(*matchers: str) -> Match:
    """The PromQL label matchers (`name="v"`, `!=`, `=~`, `!~`; regexes anchored, an absent label
    is "") as a sample filter, so a dialect states a selection once for its rules and the exporter."""
    tests = []
    for matcher in matchers:
        parsed = _MATCHER.fullmatch(matcher)
        if parsed is None:
            raise ValueError(f"not a PromQL label matcher: {matcher!r}")
        name, op, value = parsed.groups()
        value = re.sub(r"\\(.)", r"\1", value)  # PromQL string escapes
        if op in ("=~", "!~"):
            pattern = re.compile(value)
            tests.append(lambda labels, n=name, p=pattern, want=op == "=~": (p.fullmatch(labels.get(n, "")) is not None) == want)
        else:
            tests.append(lambda labels, n=name, v=value, want=op == "=": (labels.get(n, "") == v) == want)
    return lambda labels: all(test(labels) for test in tests)


@dataclass(frozen=True)
class Rule:
    """Samples whose name is `family` (or, with `pattern`, starts with `family` and matches the
    pattern) and whose labels pass `match` are added to `key`."""

    family: str
    key: Key
    match: Match = _any
    pattern: str = ""
    # with `pattern`: a literal every line this rule counts contains (a label `match` requires),
    # so that the exporter's scan looks for it rather than for every line sharing `family`
    # (Istio's `envoy_http_` lines are a third of a sidecar's exposition)
    marker: str = ""

    def applies(self, name: str) -> bool:
        return re.fullmatch(self.pattern, name) is not None if self.pattern else name == self.family


@dataclass(frozen=True)
class CertFamily:
    """Samples that are certificate expiry timestamps. The certificate's name (to tell leaf from
    CA) is a label, or, where the proxy's tag rules leave it in the metric name, `pattern`'s group."""

    family: str
    labels: tuple[str, ...] = ()
    pattern: str = ""

    def cert_name(self, sample: "Sample") -> str | None:
        """The certificate name if `sample` is one of these timestamps, else None."""
        if self.pattern:
            match = re.fullmatch(self.pattern, sample.name)
            if match is None:
                return None
            embedded = match.group(1) or ""
        elif sample.name != self.family:
            return None
        else:
            embedded = ""
        return next((sample.labels[l] for l in self.labels if l in sample.labels), embedded)


@dataclass(frozen=True)
class ProxyMetrics:
    """How the meshobs exporter reads one mesh's proxy: where, and which series feed which
    meshobs series."""

    mesh: str
    default_path: str
    counters: tuple[Rule, ...]
    certs: tuple[CertFamily, ...] = ()
    # read /certs from the same host when the metrics path is Envoy's admin
    admin_certs: bool = False
    # Envoy admin: a regex over its internal stat names for `/stats/prometheus?usedonly&filter=`,
    # so that the proxy sends only these families (see envoy.admin_stats_filter)
    stats_filter: str = ""
    # a proxy reporting for many workloads (Istio's ztunnel): the (namespace, workload) a sample
    # speaks for, by its labels; its counters are kept per that workload, not the proxy's own
    speaks_for: Callable[[Mapping[str, str]], tuple[str, str] | None] | None = None

    @property
    def stats_query(self) -> str:
        """The query string the exporter adds to the metrics path ("" for none); a constant."""
        return "usedonly&filter=" + quote(self.stats_filter, safe="") if self.stats_filter else ""

    def reports(self, key: str) -> bool:
        """Whether this proxy exposes anything the exporter turns into the series `key`."""
        return any(rule.key[0] == key for rule in self.counters)

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(sorted({rule.family for rule in self.counters} | {cert.family for cert in self.certs}))

    @functools.cached_property
    def scan(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """What the exporter's line scan looks for: (line prefixes, markers, the prefixes a line
        found by its marker must start with). A line found is then checked against `names`."""
        marked = [rule for rule in self.counters if rule.pattern and rule.marker]
        prefixes = {rule.family for rule in self.counters if rule not in marked} | {c.family for c in self.certs}
        return (tuple(sorted(prefixes)), tuple(sorted({rule.marker for rule in marked})),
                tuple(sorted({rule.family for rule in marked})))

    @functools.cached_property
    def names(self) -> re.Pattern[bytes] | None:
        """Where a family is known by a pattern, a filter on whole names for the parser, so that
        lines sharing only the prefix (`envoy_http_<prefix>_downstream_rq_total`) are not parsed."""
        if not any(rule.pattern for rule in self.counters) and not any(cert.pattern for cert in self.certs):
            return None
        names = {rule.pattern or re.escape(rule.family) for rule in self.counters}
        names |= {cert.pattern or re.escape(cert.family) for cert in self.certs}
        return re.compile(("(?:" + "|".join(sorted(names)) + ")[{ \t]").encode())

    @functools.cached_property
    def _by_name(self) -> dict[str, tuple[tuple[Rule, ...], tuple[CertFamily, ...]]]:
        return {}

    def rules_for(self, name: str) -> tuple[tuple[Rule, ...], tuple[CertFamily, ...]]:
        """Counter rules and certificate families for a sample name (memoised: names repeat)."""
        cache = self._by_name
        found = cache.get(name)
        if found is None:
            found = (
                tuple(r for r in self.counters if name.startswith(r.family) and r.applies(name)),
                tuple(c for c in self.certs if name.startswith(c.family)),
            )
            if len(name) <= NAME_CACHE_MAX_NAME:  # a proxy inventing long names gets no cache entry
                if len(cache) >= NAME_CACHE_ENTRIES:  # nor can many new short ones grow memory for ever
                    cache.clear()
                cache[name] = found
        return found


@dataclass(frozen=True)
class PodDiscovery:
    """How to tell a Kubernetes pod carries this mesh's proxy, and where its metrics are.

    A pod is meshed when one of `annotations` is present (with `annotation_value`, if given) or
    one of its containers is named `container`; `port_annotation` / `path_annotation` let the pod
    override the defaults."""

    port: int
    path: str
    annotations: tuple[str, ...] = ()
    annotation_value: str | None = None
    container: str | None = None
    port_annotation: str | None = None
    path_annotation: str | None = None

    def endpoint(self, annotations: Mapping[str, str], containers: set[str]) -> tuple[str, str] | None:
        """(port, path) of the proxy's metrics in this pod, or None if the pod is not meshed so."""
        marked = any(
            name in annotations and (self.annotation_value is None or annotations[name] == self.annotation_value)
            for name in self.annotations
        )
        if not marked and not (self.container and self.container in containers):
            return None
        port = annotations.get(self.port_annotation, str(self.port)) if self.port_annotation else str(self.port)
        path = annotations.get(self.path_annotation, self.path) if self.path_annotation else self.path
        return port, path
