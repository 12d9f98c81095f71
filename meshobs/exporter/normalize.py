"""Per-mesh dialects: which proxy series feed which meshobs series.

A dialect is a table of `Rule`s; the families it names are also the prefixes the parser keeps,
so the table is the single place that says what is read. Everything a rule matches is summed
per target (listeners, RBAC prefixes, policies), which keeps the output at a fixed, small set
of series per workload whatever the proxy exposes.

Series per workload (documented bound): 1 handshakes + 5 failure reasons + allowed + denied +
plaintext + burst gauge + bursts counter + 2 cert expiries + 5 scrape error reasons = 18,
plus `target_up` and `scrape_duration` per scraped target.
"""

from __future__ import annotations

import re
import functools
from dataclasses import dataclass
from typing import Callable, Mapping

from meshobs.exporter.parse import Sample

REASONS = ("no_client_cert", "untrusted_cert", "san_mismatch", "not_tls", "other")

HANDSHAKES = "meshobs_tls_handshakes_total"
FAILURES = "meshobs_tls_handshake_failures_total"
ALLOWED = "meshobs_authz_allowed_total"
DENIED = "meshobs_authz_denied_total"
PLAINTEXT = "meshobs_plaintext_requests_total"
CERT_EXPIRY = "meshobs_cert_expiry_timestamp_seconds"

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


@dataclass(frozen=True)
class Rule:
    """Samples whose name is `family` (or, with `pattern`, starts with `family` and matches the
    pattern) and whose labels pass `match` are added to `key`."""

    family: str
    key: Key
    match: Match = _any
    # used only when no other rule of the same key matched a sample in this scrape
    fallback: bool = False
    pattern: str = ""

    def applies(self, name: str) -> bool:
        return re.fullmatch(self.pattern, name) is not None if self.pattern else name == self.family


@dataclass(frozen=True)
class CertFamily:
    """Samples that are certificate expiry timestamps. The certificate's name (to tell leaf from
    CA) is a label, or, where the proxy's tag rules leave it in the metric name, `pattern`'s group."""

    family: str
    labels: tuple[str, ...] = ()
    pattern: str = ""

    def cert_name(self, sample: Sample) -> str | None:
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
class Dialect:
    mesh: str
    default_path: str
    counters: tuple[Rule, ...]
    certs: tuple[CertFamily, ...] = ()
    # read /certs from the same host when the metrics path is Envoy's admin
    admin_certs: bool = False

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(sorted({rule.family for rule in self.counters} | {cert.family for cert in self.certs}))

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
        found = self._by_name.get(name)
        if found is None:
            if len(self._by_name) > 50_000:  # a proxy inventing names must not grow memory for ever
                self._by_name.clear()
            found = self._by_name[name] = (
                tuple(r for r in self.counters if name.startswith(r.family) and r.applies(name)),
                tuple(c for c in self.certs if name.startswith(c.family)),
            )
        return found


_LISTENER_SSL = "envoy_listener_ssl_"
# Envoy's listener ssl counters (see envoy-security-signals.md): `handshake` counts successes only;
# plaintext to a TLS port shows as `connection_error`.
_ENVOY_TLS = (
    Rule(_LISTENER_SSL + "handshake", (HANDSHAKES, "")),
    Rule(_LISTENER_SSL + "fail_verify_no_cert", (FAILURES, "no_client_cert")),
    Rule(_LISTENER_SSL + "fail_verify_error", (FAILURES, "untrusted_cert")),
    Rule(_LISTENER_SSL + "fail_verify_san", (FAILURES, "san_mismatch")),
    Rule(_LISTENER_SSL + "connection_error", (FAILURES, "not_tls")),
    Rule(_LISTENER_SSL + "connection_error", (PLAINTEXT, "")),
    # a handshake that succeeded without a client certificate: TLS, but not mutual (a listener
    # with require_client_certificate but no validation context silently accepts these)
    Rule(_LISTENER_SSL + "no_certificate", (PLAINTEXT, "")),
    Rule(_LISTENER_SSL + "fail_verify_cert_hash", (FAILURES, "other")),
)
# Standard Envoy tags (Consul): one family per decision; L7 http RBAC and L4 network RBAC
# (Consul intentions use the `connect_authz` prefix). Shadow (dry-run) decisions are other names.
_ENVOY_RBAC = (
    Rule("envoy_http_rbac_allowed", (ALLOWED, "")),
    Rule("envoy_http_rbac_denied", (DENIED, "")),
    Rule("envoy_rbac_allowed", (ALLOWED, "")),
    Rule("envoy_rbac_denied", (DENIED, "")),
)
_ENVOY_CERTS = CertFamily("envoy_listener_ssl_certificate_expiration_unix_time_seconds", ("envoy_tls_certificate",))

# Istio's tag rules fold the decision into the `authz_enforce_result` label (dry-run series carry
# authz_dry_run_* instead). Whether the filter's stat prefix becomes a label or stays in the name
# depends on the Istio version's regexes: `envoy_http_rbac{http_conn_manager_prefix=...}` or
# `envoy_http_inbound_0_0_0_0_8080_rbac{...}`; both are read.
_ISTIO_RBAC_NAME = r"envoy_(?:http|tcp)_(?:.+_)?rbac|envoy_rbac"
_ISTIO = (
    *(Rule(family, (key, ""), label_is("authz_enforce_result", result), pattern=_ISTIO_RBAC_NAME)
      for family in ("envoy_http_", "envoy_tcp_", "envoy_rbac")
      for key, result in ((ALLOWED, "allowed"), (DENIED, "denied"))),
    # Where RBAC stats are filtered out, the destination's own 403s are the denials. (An
    # application's 403s look the same: hence a fallback only, never added to RBAC counts.)
    Rule("istio_requests_total", (DENIED, ""),
         all_of(label_is("reporter", "destination"), label_is("response_code", "403")), fallback=True),
    # PERMISSIVE mode: plaintext requests are served and labelled by the destination reporter
    Rule("istio_requests_total", (PLAINTEXT, ""),
         all_of(label_is("reporter", "destination"), label_is("connection_security_policy", "none"))),
)
# Istio has no tag for the certificate name: it stays in the metric name (`..._certificate_default_
# expiration_unix_time_seconds`, `ROOTCA`); a tls_certificate label is read where one exists.
_ISTIO_CERTS = CertFamily("envoy_listener_ssl_certificate_", ("tls_certificate", "envoy_tls_certificate"),
                          pattern=r"envoy_listener_ssl_certificate_(?:(.+)_)?expiration_unix_time_seconds")

ISTIO = Dialect("istio", "/stats/prometheus", _ENVOY_TLS + _ENVOY_RBAC + _ISTIO, (_ISTIO_CERTS,))
CONSUL = Dialect("consul", "/stats/prometheus", _ENVOY_TLS + _ENVOY_RBAC, (_ENVOY_CERTS,), admin_certs=True)

_INBOUND = label_is("direction", "inbound")
# linkerd2-proxy has no handshake-failure counter; meshed inbound connections are `tls="true"`,
# anything else reaching the proxy from outside the pod is plaintext.
LINKERD = Dialect(
    "linkerd", "/metrics",
    (
        Rule("inbound_http_authz_allow_total", (ALLOWED, "")),
        Rule("inbound_tcp_authz_allow_total", (ALLOWED, "")),
        Rule("inbound_http_authz_deny_total", (DENIED, "")),
        Rule("inbound_tcp_authz_deny_total", (DENIED, "")),
        Rule("tcp_open_total", (HANDSHAKES, ""), all_of(_INBOUND, label_is("tls", "true"))),
        Rule("request_total", (PLAINTEXT, ""),
             all_of(_INBOUND, label_not("tls", "true"), label_not("no_tls_reason", "loopback"))),
    ),
    (CertFamily("identity_cert_expiration_timestamp_seconds"),),
)

DIALECTS = {d.mesh: d for d in (ISTIO, CONSUL, LINKERD)}

_CA_NAME = re.compile(r"(^|[_.-])ca([_.-]|$)|rootca", re.IGNORECASE)


def cert_kind(name: str) -> str:
    """`ca` for a trust anchor (Envoy `unnamed_ca_cert_<hash>`, Istio `ROOTCA`), else `leaf`."""
    return "ca" if _CA_NAME.search(name) else "leaf"


@dataclass
class Reading:
    """One target's scrape, normalized: raw counter values (the proxy's own, may reset) and
    certificate expiry timestamps by kind."""

    counters: dict[Key, float]
    certs: dict[str, float]


def normalize(dialect: Dialect, samples: list[Sample]) -> Reading:
    counters: dict[Key, float] = {rule.key: 0.0 for rule in dialect.counters}
    fallbacks: dict[Key, float] = {}
    primary_seen: set[Key] = set()
    certs: dict[str, float] = {}
    for sample in samples:
        rules, cert_families = dialect.rules_for(sample.name)
        for rule in rules:
            if rule.match(sample.labels):
                if rule.fallback:
                    fallbacks[rule.key] = fallbacks.get(rule.key, 0.0) + sample.value
                else:
                    counters[rule.key] += sample.value
                    primary_seen.add(rule.key)
        for family in cert_families:
            name = family.cert_name(sample)
            if name is not None and sample.value > 0:
                kind = cert_kind(name)
                certs[kind] = min(certs.get(kind, sample.value), sample.value)
    for key, value in fallbacks.items():
        if key not in primary_seen:
            counters[key] = value
    for reason in REASONS:
        counters.setdefault((FAILURES, reason), 0.0)
    return Reading(counters, certs)


def certs_from_admin(document: dict) -> dict[str, float]:
    """Expiry by kind from Envoy's /certs JSON (`expiration_time` is RFC 3339, exact to the second)."""
    from datetime import datetime

    certs: dict[str, float] = {}
    for entry in document.get("certificates", []):
        # the leaf is the first element of the chain; the rest are intermediates
        for kind, chain in (("leaf", (entry.get("cert_chain") or [])[:1]), ("ca", entry.get("ca_cert") or [])):
            for cert in chain:
                raw = cert.get("expiration_time")
                if not raw:
                    continue
                ts = datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
                certs[kind] = min(certs.get(kind, ts), ts)
    return certs
