"""What a mesh dialect is: where one mesh keeps each number of the signal model.

A dialect only names metrics, matchers and label mappings (`Source`s). It never writes a
query: `meshobs.promql` does, the same way for every mesh. Signals that the meshobs exporter
normalizes (TLS failures, authorization decisions, plaintext, certificate expiry) are read from
the exporter first and from the proxy's own metrics where the exporter does not run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshobs.meshes.ambient import Ztunnels
from meshobs.meshes.crosscluster import CrossCluster
from meshobs.meshes.extended import Client, ControlPlaneDetail, Http, ProxyHealth, Tcp
from meshobs.meshes.proxy import PodDiscovery, ProxyMetrics
from meshobs.promql import Source

# The exporter's series carry mesh, namespace and workload; namespace/workload are the
# destination, since the exporter reads the proxy that receives the traffic.
_EXPORTER_LABELS = {"destination_namespace": "namespace", "destination_workload": "workload"}

EXPORTER_METRICS = (
    "meshobs_tls_handshakes_total",
    "meshobs_tls_handshake_failures_total",
    "meshobs_authz_allowed_total",
    "meshobs_authz_denied_total",
    "meshobs_authz_dry_run_allowed_total",
    "meshobs_authz_dry_run_denied_total",
    "meshobs_plaintext_requests_total",
    "meshobs_authz_denied_burst",
    "meshobs_authz_denied_bursts_total",
    "meshobs_cert_expiry_timestamp_seconds",
    "meshobs_cert_not_before_timestamp_seconds",
    "meshobs_target_up",
    "meshobs_scrape_duration_seconds",
    "meshobs_scrape_errors_total",
)


def exporter_source(mesh: str, metric: str | tuple[str, ...], **labels: str) -> Source:
    mapping: dict = dict(_EXPORTER_LABELS)
    mapping.update(labels)
    return Source(metric, (f'mesh="{mesh}"',), mapping, origin="exporter")


@dataclass(frozen=True)
class ControlPlane:
    """Control-plane numbers a mesh has; None where it has no such number."""

    up: Source | None = None
    connected_proxies: Source | None = None
    config_pushes: Source | None = None
    push_duration: Source | None = None  # histogram buckets, seconds after scale
    ca_expiry: Source | None = None  # timestamp seconds
    cert_issuance_errors: Source | None = None


@dataclass(frozen=True)
class Dialect:
    """One mesh.

    - `requests`: HTTP requests as seen by the destination workload's proxy, with facets
      "error" (5xx, and failed gRPC calls where the mesh labels them), "403", and
      "plaintext" where the mesh labels requests served without mutual TLS.
    - `service_requests`: requests to a destination service as each end of the call counts
      them, with facet "error": the destination's proxy, then the callers' (the only ones to
      see a call no destination pod answered). Both ends count the same calls: per service the
      larger count is taken, never the sum.
    - `edges`: requests with both source and destination labels.
    - `request_duration`: latency histogram buckets of a destination service (scaled to seconds).
    - native security sources, used where the exporter has no series.
    - `proxy` and `discovery`: what the meshobs exporter reads from the sidecars, and where.
    """

    name: str
    title: str
    proxy: ProxyMetrics  # what the exporter reads from this mesh's sidecars
    discovery: PodDiscovery  # how the exporter finds them in Kubernetes
    requests: Source
    service_requests: tuple[Source, ...]
    edges: Source
    request_duration: Source
    # the same histogram as the destination workload's own proxy measures it (meshobs stat per workload)
    inbound_duration: Source | None = None
    authz_denied: tuple[Source, ...] = ()
    authz_allowed: tuple[Source, ...] = ()
    tls_handshakes: tuple[Source, ...] = ()
    tls_failures: tuple[Source, ...] = ()
    # traffic served without mutual TLS beyond the `requests` "plaintext" facet (Istio ambient: connections)
    plaintext: tuple[Source, ...] = ()
    # Connections accepted by workloads that may have no L7 view at all (Istio ambient without a
    # waypoint): a workload's traffic in the security numbers (mTLS coverage) where `requests` has none.
    inbound_connections: tuple[Source, ...] = ()
    cert_expiry: tuple[Source, ...] = ()
    tcp_connections: tuple[Source, ...] = ()  # connections the destination proxy accepted (counters)
    config_rejected: tuple[Source, ...] = ()
    control_plane: ControlPlane = field(default_factory=ControlPlane)
    # How long the mesh's workload (leaf) certificates live by default: where only a
    # certificate's expiry is known, its lifetime is taken to be this.
    leaf_lifetime: str = "24h"
    # Other metric names this mesh is known to expose (for `meshobs check`), beyond the sources.
    extra_catalogue: tuple[str, ...] = ()
    # Ports besides `discovery.port` where scrapers outside the pod read the proxy's metrics.
    other_metrics_ports: tuple[int, ...] = ()
    # Beyond HTTP at the destination (meshobs/meshes/extended.py): None fields are declared unavailable.
    tcp: Tcp = field(default_factory=Tcp)
    client: Client = field(default_factory=Client)
    http: Http = field(default_factory=Http)
    proxy_health: ProxyHealth = field(default_factory=ProxyHealth)
    control_plane_detail: ControlPlaneDetail = field(default_factory=ControlPlaneDetail)
    # calls between clusters (meshobs/meshes/crosscluster.py); None where the mesh's series do not tell
    cross_cluster: CrossCluster | None = None
    # per-node L4 proxies (Istio ambient's ztunnels), None where the mesh has none
    ztunnels: Ztunnels | None = None
    # Whether `edges` name the destination's namespace as the workload numbers do (Kubernetes's);
    # Consul's callers know only the Consul namespace of the service they call.
    edges_in_workload_namespaces: bool = True

    def metrics_ports(self) -> tuple[int, ...]:
        """Every port on which Prometheus may read this mesh's proxies (the exporter reads `discovery.port`)."""
        return (self.discovery.port, *self.other_metrics_ports)

    # Exporter first: its series look the same on every mesh; native ones fill the gaps.
    def exporter(self, metric: str | tuple[str, ...], **labels: str) -> Source:
        return exporter_source(self.name, metric, **labels)

    def authz_denied_sources(self) -> tuple[Source, ...]:
        return (self.exporter("meshobs_authz_denied_total"),) + self.authz_denied

    def authz_allowed_sources(self) -> tuple[Source, ...]:
        return (self.exporter("meshobs_authz_allowed_total"),) + self.authz_allowed

    def dry_run_sources(self, series: str) -> tuple[Source, ...]:
        """The exporter's dry-run decisions, where this mesh's proxy reports any (Envoy shadow rules)."""
        return (self.exporter(series),) if self.proxy.reports(series) else ()

    def tls_failure_sources(self) -> tuple[Source, ...]:
        return (self.exporter("meshobs_tls_handshake_failures_total", reason="reason"),) + self.tls_failures

    def tls_handshake_sources(self) -> tuple[Source, ...]:
        return (self.exporter("meshobs_tls_handshakes_total"),) + self.tls_handshakes

    def plaintext_sources(self) -> tuple[Source, ...]:
        native = (self.requests.narrowed("plaintext"),) if self.requests.has("plaintext") else ()
        return (self.exporter("meshobs_plaintext_requests_total"),) + native + self.plaintext

    def cert_expiry_sources(self) -> tuple[Source, ...]:
        ca = (self.control_plane.ca_expiry,) if self.control_plane.ca_expiry else ()
        return (self.exporter("meshobs_cert_expiry_timestamp_seconds", cert="cert"),) + self.cert_expiry + ca

    def cert_not_before_sources(self) -> tuple[Source, ...]:
        return (self.exporter("meshobs_cert_not_before_timestamp_seconds", cert="cert"),)

    def exporter_presence_source(self) -> Source:
        """Series the exporter has for every workload it reads, whatever happened there."""
        return self.exporter(("meshobs_target_up", "meshobs_authz_allowed_total", "meshobs_authz_denied_total",
                              "meshobs_authz_denied_burst", "meshobs_tls_handshakes_total"))

    def target_up_source(self) -> Source:
        return self.exporter("meshobs_target_up")

    def burst_source(self) -> Source:
        return self.exporter("meshobs_authz_denied_burst")

    def catalogue(self) -> frozenset[str]:
        """Every metric name the rules and dashboards of this mesh may read."""
        sources: list[Source | None] = [self.requests, *self.service_requests, self.edges, self.request_duration, self.inbound_duration]
        sources += [*self.authz_denied, *self.authz_allowed, *self.tls_handshakes, *self.tls_failures,
                    *self.plaintext, *self.inbound_connections, *self.cert_expiry, *self.tcp_connections, *self.config_rejected]
        sources += [getattr(self.control_plane, f) for f in self.control_plane.__dataclass_fields__]
        if self.cross_cluster:
            sources += self.cross_cluster.sources()
        sources += [s for group in (self.tcp, self.client, self.http, self.proxy_health, self.control_plane_detail)
                    for s in group.sources()]
        if self.ztunnels:
            sources += [self.ztunnels.xds_failures, self.ztunnels.identity_failures]  # `up` is Prometheus's own
        names = {name for s in sources if s is not None for name in s.metric_names()}
        return frozenset(names | set(EXPORTER_METRICS) | set(self.extra_catalogue))
