"""The signal model: mesh-agnostic questions, answered by a dialect's sources.

A `Signal` knows what it measures, its unit and which of a dialect's sources answer it; it
knows no metric names. `Signal.expr(dialect, query)` is the single place a signal becomes
PromQL, for recording rules, alerts and dashboards alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from meshobs import promql
from meshobs.meshes.base import Dialect
from meshobs.meshes.proxy import DRY_RUN_ALLOWED as DRY_RUN_ALLOWED_TOTAL
from meshobs.meshes.proxy import DRY_RUN_DENIED as DRY_RUN_DENIED_TOTAL
from meshobs.promql import Query, Source

SERVICE = ("destination_namespace", "destination_service")
WORKLOAD = ("destination_namespace", "destination_workload")
EDGE = ("source_namespace", "source_workload", "destination_namespace", "destination_service")
WORKLOAD_EDGE = ("source_namespace", "source_workload", "destination_namespace", "destination_workload")
# a denied caller by identity too, where the mesh labels it (Istio): empty elsewhere
DENIED_EDGE = WORKLOAD_EDGE + ("source_principal",)


@dataclass(frozen=True)
class Signal:
    name: str
    title: str
    unit: str  # Grafana unit id
    kind: str  # "rate", "increase", "gauge_min", "gauge_max", "gauge_sum", "gauge_count", "quantile"
    sources: Callable[[Dialect], tuple[Source, ...]]
    facet: str | None = None
    description: str = ""
    combine: str = "first"  # how several sources meet: see promql.rate
    # Native sources count only for workloads the exporter does not read (where it does, it is
    # the judge: Istio's 403s are also an application's own answers)
    exporter_judges: bool = False

    def available(self, dialect: Dialect) -> bool:
        sources = self.sources(dialect)
        return bool(sources) and (self.facet is None or any(s.has(self.facet) for s in sources))

    def expr(self, dialect: Dialect, query: Query, quantile: float | None = None, extra: promql.Extra | None = None,
             total: bool = False) -> str:
        """PromQL for this signal; `total` asks a rate signal for the increase over the window instead."""
        sources = self.sources(dialect)
        if self.exporter_judges and len(sources) > 1:
            exporter = promql.rate(sources[:1], query, self.facet, extra, func="increase" if total else "rate")
            native = promql.rate(sources[1:], query, self.facet, extra, func="increase" if total else "rate")
            present = promql.gauge((dialect.exporter_presence_source(),), query, "group", extra)
            return promql.or_fallback(exporter, promql.unless_present(native, present, query.by))
        if self.kind == "rate":
            return promql.rate(sources, query, self.facet, extra, func="increase" if total else "rate", combine=self.combine)
        if self.kind == "increase":
            # counters born on their first event (Istio's xDS rejections): that event counts
            return promql.rate(sources, query, self.facet, extra, func="lazy_increase")
        if self.kind.startswith("gauge_"):
            return promql.gauge(sources, query, self.kind.removeprefix("gauge_"), extra)
        if self.kind == "quantile":
            assert quantile is not None, f"{self.name} needs a quantile"
            return promql.histogram_quantile(quantile, sources[0], query, extra)
        raise ValueError(f"unknown signal kind {self.kind}")


def at_path(path: str) -> Callable[[Dialect], tuple[Source, ...]]:
    """Sources of a signal a dialect answers with one Source at `path` ("requests",
    "control_plane.up", "ztunnels.up"), none where the dialect has None there or on the way."""

    def sources(dialect: Dialect) -> tuple[Source, ...]:
        source: object = dialect
        for attr in path.split("."):
            if source is None:
                return ()
            source = getattr(source, attr)
        return (source,) if source is not None else ()

    return sources


REQUESTS = Signal("requests", "Requests", "reqps", "rate", lambda d: d.service_requests, combine="largest",
                  description="HTTP/gRPC requests to a destination service, as the larger of its own and its callers' counts")
REQUEST_ERRORS = Signal("request_errors", "Failed requests", "reqps", "rate", lambda d: d.service_requests, facet="error",
                        combine="largest",
                        description="requests that failed (5xx, a failed gRPC status, no answer), as the destination or its callers saw them")
INBOUND_REQUESTS = Signal("inbound_requests", "Inbound requests", "reqps", "rate", at_path("requests"),
                          description="HTTP/gRPC requests received by the destination workload's proxy")
INBOUND_TRAFFIC = Signal("inbound_traffic", "Inbound requests", "reqps", "rate",
                         lambda d: (d.requests,) + d.inbound_connections,
                         description="HTTP/gRPC requests received by the destination workload's proxy; for a workload "
                                     "with no L7 view (Istio ambient without a waypoint), the connections it accepted")
INBOUND_ERRORS = Signal("inbound_errors", "Inbound failures", "reqps", "rate", at_path("requests"), facet="error",
                        description="requests the destination workload's proxy answered with a failure (5xx, failed gRPC)")
REQUEST_DURATION = Signal("request_duration", "Latency", "s", "quantile", at_path("request_duration"),
                          description="time to answer a request to a destination service (Linkerd: as its callers see it)")
INBOUND_PLAINTEXT = Signal("inbound_plaintext", "Inbound plaintext requests", "reqps", "rate", at_path("requests"),
                           facet="plaintext", description="requests the destination workload's proxy served without mutual TLS")
INBOUND_DURATION = Signal("inbound_duration", "Inbound latency", "s", "quantile", at_path("inbound_duration"),
                          description="time the destination workload's proxy took to answer a request")
PLAINTEXT_REQUESTS = Signal("plaintext_requests", "Plaintext requests", "reqps", "rate",
                            lambda d: d.plaintext_sources(),
                            description="requests that reached a workload without mutual TLS")
EDGE_REQUESTS = Signal("edge_requests", "Requests by source", "reqps", "rate", at_path("edges"),
                       description="requests by source and destination")
EDGE_ERRORS = Signal("edge_errors", "Failed requests by source", "reqps", "rate", at_path("edges"), facet="error",
                     description="failed requests (5xx, failed gRPC) by source and destination")
EDGE_MTLS = Signal("edge_mtls", "mTLS requests by source", "reqps", "rate", at_path("edges"), facet="mtls",
                   description="requests over mutual TLS, by source and destination")
EDGE_PLAINTEXT = Signal("edge_plaintext", "Plaintext requests by source", "reqps", "rate", at_path("edges"), facet="plaintext",
                        description="requests served without mutual TLS, by source and destination")
EDGE_FORBIDDEN = Signal("edge_forbidden", "403 responses by source", "reqps", "rate", at_path("edges"), facet="403",
                        description="403 responses by source and destination")
AUTHZ_DENIED = Signal("authz_denied", "Authorization denials", "reqps", "rate", lambda d: d.authz_denied_sources(),
                      description="requests or connections refused by an authorization policy", exporter_judges=True)
AUTHZ_ALLOWED = Signal("authz_allowed", "Authorization allowed", "reqps", "rate", lambda d: d.authz_allowed_sources(),
                       description="requests or connections an authorization policy allowed")
DRY_RUN_DENIED = Signal("dry_run_denied", "Would be denied", "reqps", "rate", lambda d: d.dry_run_sources(DRY_RUN_DENIED_TOTAL),
                        description="requests or connections a dry-run (shadow) authorization policy would deny")
DRY_RUN_ALLOWED = Signal("dry_run_allowed", "Would be allowed", "reqps", "rate",
                         lambda d: d.dry_run_sources(DRY_RUN_ALLOWED_TOTAL),
                         description="requests or connections a dry-run (shadow) authorization policy would allow")
TCP_CONNECTIONS = Signal("tcp_connections", "New TCP connections", "cps", "rate", lambda d: d.tcp_connections,
                         description="TCP connections the destination proxy accepted")
TLS_HANDSHAKES = Signal("tls_handshakes", "TLS handshakes", "ops", "rate", lambda d: d.tls_handshake_sources(),
                        description="successful TLS handshakes at the destination")
TLS_FAILURES = Signal("tls_failures", "TLS handshake failures", "ops", "rate", lambda d: d.tls_failure_sources(),
                      description="TLS handshakes or certificate verifications that failed, by reason")
CERT_EXPIRY = Signal("cert_expiry", "Certificate expiry", "dateTimeAsIso", "gauge_min", lambda d: d.cert_expiry_sources(),
                     description="when the workload's certificates expire (Unix time)")
CERT_NOT_BEFORE = Signal("cert_not_before", "Certificate issued", "dateTimeAsIso", "gauge_max",
                         lambda d: d.cert_not_before_sources(),
                         description="when the workload's certificates became valid (Unix time), where the exporter knows it")
CONFIG_REJECTIONS = Signal("config_rejections", "Configuration rejected", "short", "increase",
                           lambda d: d.config_rejected,
                           description="configuration updates rejected by proxies or the control plane")
TARGET_UP = Signal("target_up", "Proxies scraped", "short", "gauge_sum", lambda d: (d.target_up_source(),),
                   description="sidecar proxies the meshobs exporter reads successfully")
BURSTS_STARTED = Signal("bursts_started", "Denial bursts started", "short", "increase",
                        lambda d: (d.exporter("meshobs_authz_denied_bursts_total"),),
                        description="bursts of authorization denials the meshobs exporter saw begin")
BURST_ACTIVE = Signal("burst_active", "Denial burst active", "short", "gauge_max", lambda d: (d.burst_source(),),
                      description="1 while the exporter sees a burst of authorization denials")
CONTROL_PLANE_UP = Signal("control_plane_up", "Control plane instances", "short", "gauge_count", at_path("control_plane.up"))
CONNECTED_PROXIES = Signal("connected_proxies", "Connected proxies", "short", "gauge_sum", at_path("control_plane.connected_proxies"))
CONFIG_PUSHES = Signal("config_pushes", "Configuration pushes", "ops", "rate", at_path("control_plane.config_pushes"))
PUSH_DURATION = Signal("push_duration", "Push / convergence time", "s", "quantile", at_path("control_plane.push_duration"))
CA_EXPIRY = Signal("ca_expiry", "Root CA expiry", "dateTimeAsIso", "gauge_min", at_path("control_plane.ca_expiry"))
CERT_ISSUANCE_ERRORS = Signal("cert_issuance_errors", "Certificate signing errors", "ops", "rate",
                              at_path("control_plane.cert_issuance_errors"))
SCRAPE_ERRORS = Signal("scrape_errors", "Exporter scrape errors", "ops", "rate",
                       lambda d: (d.exporter("meshobs_scrape_errors_total", reason="reason"),),
                       description="failed scrapes of sidecar proxies by the meshobs exporter, by reason")


# Istio ambient: per node, each ztunnel (normalized label `node`)
ZTUNNEL_UP = Signal("ztunnel_up", "ztunnels scraped", "short", "gauge_min", at_path("ztunnels.up"),
                    description="1 while Prometheus scrapes the node's ztunnel (0: its ambient pods are unreachable)")
ZTUNNEL_XDS_FAILURES = Signal("ztunnel_xds_failures", "ztunnel xDS failures", "ops", "rate", at_path("ztunnels.xds_failures"),
                              description="xDS streams from a ztunnel to istiod that failed (not the normal reconnects)")
ZTUNNEL_IDENTITY_FAILURES = Signal("ztunnel_identity_failures", "ztunnel certificate failures", "cps", "rate",
                                   at_path("ztunnels.identity_failures"),
                                   description="connections a ztunnel closed for want of a workload certificate or a "
                                               "failed or revoked TLS identity")
