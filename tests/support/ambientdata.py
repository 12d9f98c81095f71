"""An Istio ambient mesh as its data planes expose it, for replay targets: ztunnels (one per node,
L4 only) and a waypoint (Envoy, L7, `reporter="waypoint"`), beside a sidecar namespace, with the
series names, label names, label order and label values of the sources docs/ambient.md cites
(ztunnel src/proxy/metrics.rs and Istio's waypoint template, at the versions it names).

Layout (mixed):
- `shop` is a sidecar namespace: frontend (sidecar) calls accounts in `bank`.
- `bank` is ambient (istio.io/dataplane-mode=ambient) with a namespace waypoint `waypoint`:
  web -> accounts (HTTP, through the waypoint), accounts -> postgres (TCP, L4 only).
- Injected failures: `intruder` in `other` (ambient) denied at L4 by ztunnel (response_flags
  DENY, the only place an L4 denial shows), an L7 denial at the waypoint (403, RBAC), 503s from
  accounts, a TLS failure between ztunnels, and plaintext from an out-of-mesh `legacy/batch` pod
  (ztunnel labels it connection_security_policy="unknown": ztunnel never writes "none").

Each hop reports on its own: the source ztunnel's `reporter="source"` and the destination
ztunnel's `reporter="destination"` count the same connection twice, and a request through the
waypoint is two connections at L4 (client -> waypoint, waypoint -> server) but one request at L7.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.support import meshdata_more
from tests.support.meshdata import (
    BYTES_BUCKETS,
    BYTES_SHARE,
    CERT_NOT_AFTER_IN,
    Labels,
    Series,
    Target,
    counter,
    gauge,
    histogram,
)

ISTIO_VERSION = "1.30.3"  # the `tag` of istio_build; names, labels and flags as in ztunnel and Istio 1.30.3
ZTUNNEL_POD = "ztunnel-{node}"
WAYPOINT = "waypoint"  # istioctl waypoint apply's default Gateway name
NODES = ("node-a", "node-b")


@dataclass(frozen=True)
class Workload:
    namespace: str
    name: str
    node: str | None  # None: not captured by ztunnel (sidecar or out of mesh)
    ambient: bool = True

    @property
    def principal(self) -> str:
        return f"spiffe://cluster.local/ns/{self.namespace}/sa/{self.name}"


WEB = Workload("bank", "web", "node-a")
ACCOUNTS = Workload("bank", "accounts", "node-b")
POSTGRES = Workload("bank", "postgres", "node-b")
INTRUDER = Workload("other", "intruder", "node-a")
WAYPOINT_WL = Workload("bank", WAYPOINT, "node-a")  # waypoint pods are not captured, but run on a node
FRONTEND = Workload("shop", "frontend", None, ambient=False)
LEGACY = Workload("legacy", "batch", None, ambient=False)  # out of mesh: plaintext


@dataclass(frozen=True)
class L4:
    """TCP connections per second from `source` to `destination` (`service` the one dialled)."""

    source: Workload
    destination: Workload
    service: Workload
    rate: float
    mtls: bool = True
    flags: str = "-"  # ztunnel's response_flags: - DENY CONNECT TLS_FAILURE ...


@dataclass(frozen=True)
class L7:
    """Requests per second through the waypoint answered with `code`."""

    source: Workload
    destination: Workload
    code: str
    rate: float
    grpc_status: str = ""  # a gRPC call: HTTP 200 with this grpc-status ("0" is OK)


# Through the waypoint each connection becomes two: client -> waypoint and waypoint -> server.
L4_EDGES = (
    L4(WEB, WAYPOINT_WL, ACCOUNTS, 2.0),
    L4(WAYPOINT_WL, ACCOUNTS, ACCOUNTS, 2.0),
    L4(ACCOUNTS, POSTGRES, POSTGRES, 1.0),
    L4(INTRUDER, POSTGRES, POSTGRES, 0.5, flags="DENY"),  # L4 AuthorizationPolicy at postgres
    L4(WEB, ACCOUNTS, ACCOUNTS, 0.2, flags="TLS_FAILURE"),
    L4(LEGACY, POSTGRES, POSTGRES, 0.3, mtls=False),  # PERMISSIVE: plaintext from outside the mesh
)
L7_EDGES = (
    L7(WEB, ACCOUNTS, "200", 8.0),
    L7(WEB, ACCOUNTS, "503", 0.8),
    L7(FRONTEND, ACCOUNTS, "200", 3.0),
    L7(INTRUDER, ACCOUNTS, "403", 1.0),  # L7 AuthorizationPolicy bound to the waypoint
)
# Only in the `mixed` verify mesh (tests elsewhere count L7_EDGES' rates): a gRPC call failing
# UNAVAILABLE, which travels as HTTP 200 with grpc-status 14.
L7_GRPC = (L7(WEB, ACCOUNTS, "200", 0.2, grpc_status="14"),)


def _peer(side: str, workload: Workload | None) -> Labels:
    """ztunnel's CommonTrafficLabels for one side, `unknown` where ztunnel knows no workload."""
    keys = ("workload", "canonical_service", "canonical_revision", "workload_namespace", "principal", "app",
            "version", "cluster")
    if workload is None or workload is LEGACY:
        return {f"{side}_{key}": "unknown" for key in keys}
    values = (workload.name, workload.name, "latest", workload.namespace, workload.principal, workload.name,
              "latest", "Kubernetes")
    return {f"{side}_{key}": value for key, value in zip(keys, values)}


def _ztunnel_labels(edge: L4, reporter: str) -> Labels:
    """One series' labels, in the order ztunnel encodes them (src/proxy/metrics.rs)."""
    source = _peer("source", edge.source)
    if not edge.mtls:
        source["source_principal"] = "unknown"  # ztunnel writes a principal only from an mTLS identity
    service = edge.service
    return {
        "reporter": reporter,
        **source,
        "destination_service": f"{service.name}.{service.namespace}.svc.cluster.local",
        "destination_service_namespace": service.namespace,
        "destination_service_name": service.name,
        **_peer("destination", edge.destination),
        "request_protocol": "tcp",
        "response_flags": edge.flags,
        "connection_security_policy": "mutual_tls" if edge.mtls else "unknown",
        "source_region": "unknown", "source_zone": "unknown",
        "destination_region": "unknown", "destination_zone": "unknown",
    }


def _ztunnel_edge(edge: L4, reporter: str) -> list[Series]:
    labels = _ztunnel_labels(edge, reporter)
    out = [counter("istio_tcp_connections_opened_total", labels, edge.rate),
           counter("istio_tcp_connections_closed_total", labels, edge.rate * 0.95)]
    if edge.flags != "-":
        out.append(counter("istio_tcp_connections_failed_total", labels, edge.rate))
    else:
        out += [counter("istio_tcp_sent_bytes_total", labels, edge.rate * 4000),
                counter("istio_tcp_received_bytes_total", labels, edge.rate * 900)]
    return out


def _ztunnel(node: str, now: float) -> Target:
    series = [
        gauge("istio_build", {"component": "ztunnel", "tag": ISTIO_VERSION}, 1),
        counter("istio_xds_connection_terminations_total", {"reason": "Reconnect"}, 0.001),
        counter("istio_xds_message_total", {"url": "type.googleapis.com/istio.workload.Address"}, 0.2),
        counter("istio_xds_message_total", {"url": "type.googleapis.com/istio.security.Authorization"}, 0.05),
        counter("istio_xds_message_bytes_total", {"url": "type.googleapis.com/istio.workload.Address"}, 0.2 * 900),
        counter("istio_xds_message_bytes_total", {"url": "type.googleapis.com/istio.security.Authorization"}, 0.05 * 400),
        gauge("istio_tcp_sockets_open", {"reporter": "source"}, 12),
        gauge("istio_tcp_sockets_open", {"reporter": "destination"}, 9),
        gauge("workload_manager_active_proxy_count", {}, sum(1 for w in (WEB, ACCOUNTS, POSTGRES, INTRUDER) if w.node == node)),
        gauge("workload_manager_pending_proxy_count", {}, 0),
        counter("workload_manager_proxies_started_total", {}, 0.0),
        counter("workload_manager_proxies_stopped_total", {}, 0.0),
        # DnsLabels of ztunnel 1.30.3 (src/dns/metrics.rs)
        counter("istio_dns_requests_total", {"request_query_type": "A", "request_protocol": "udp",
                                             "source_canonical_service": "web", "source_canonical_revision": "latest"}, 1.0),
        # ztunnel's only process series (src/metrics/process.rs, 1.28+): CPU and memory are cAdvisor's
        gauge("process_open_fds", {}, 40),
        gauge("process_max_fds", {}, 1_048_576),
    ]
    for edge in L4_EDGES:
        # A waypoint's own outbound is Envoy's, not a ztunnel's; a refused connection is
        # recorded where the refusal happens, at the destination.
        if edge.source.node == node and edge.source is not WAYPOINT_WL and edge.flags == "-":
            series += _ztunnel_edge(edge, "source")
        if edge.destination.node == node and edge.destination is not WAYPOINT_WL:
            series += _ztunnel_edge(edge, "destination")
    labels = {"namespace": "istio-system", "pod": ZTUNNEL_POD.format(node=node), "node": node}
    return Target("/stats/prometheus", labels, "istio", "ztunnel", series, proxy=False)


def _waypoint_labels(edge: L7) -> Labels:
    """Istio's stats filter with Reporter SERVER_GATEWAY: sidecar label names, reporter=waypoint."""
    return {
        "reporter": "waypoint",
        **_peer("source", edge.source),
        **_peer("destination", edge.destination),
        "destination_service": f"{edge.destination.name}.{edge.destination.namespace}.svc.cluster.local",
        "destination_service_name": edge.destination.name,
        "destination_service_namespace": edge.destination.namespace,
        "request_protocol": "grpc" if edge.grpc_status else "http", "response_code": edge.code,
        "grpc_response_status": edge.grpc_status,
        "response_flags": "-", "connection_security_policy": "mutual_tls",
    }


def _kubelet() -> Target:
    """The kubelet's cAdvisor series of the ztunnel containers (namespace, pod, container; no node)."""
    series = []
    for node in NODES:
        labels = {"namespace": "istio-system", "pod": ZTUNNEL_POD.format(node=node), "container": "istio-proxy"}
        series += [counter("container_cpu_usage_seconds_total", labels, 0.02),
                   gauge("container_memory_working_set_bytes", labels, 28_000_000)]
    return Target("/metrics/cadvisor", {}, "istio", "kubelet", series, proxy=False)


def _waypoint(now: float, edges: tuple[L7, ...] = L7_EDGES) -> Target:
    series: list[Series] = []
    allowed = denied = 0.0
    for edge in edges:
        labels = _waypoint_labels(edge)
        series.append(counter("istio_requests_total", labels, edge.rate))
        series += histogram("istio_request_duration_milliseconds", labels, edge.rate)
        series += histogram("istio_request_bytes", labels, edge.rate, BYTES_BUCKETS, BYTES_SHARE, mean=300)
        series += histogram("istio_response_bytes", labels, edge.rate, BYTES_BUCKETS, BYTES_SHARE, mean=1200)
        if edge.code == "403":
            denied += edge.rate
        else:
            allowed += edge.rate
    # the waypoint's HCM stat prefix is `inbound_0.0.0.0_<service port>` (Istio 1.30.3 listener_waypoint.go)
    hcm = {"http_conn_manager_prefix": "inbound_0.0.0.0_80"}
    series.append(counter("envoy_http_rbac", {"authz_enforce_result": "allowed", **hcm}, allowed))
    series.append(counter("envoy_http_rbac", {"authz_enforce_result": "denied", **hcm}, denied))
    series.append(gauge("istio_build", {"component": "proxy", "tag": ISTIO_VERSION}, 1))
    series.append(gauge("envoy_server_days_until_first_cert_expiring", {}, CERT_NOT_AFTER_IN // 86400))
    # Envoy's server stats (kept by Istio's default stats inclusion), as on a sidecar
    series += [gauge("envoy_server_live", {}, 1), gauge("envoy_server_memory_allocated", {}, 9_500_000),
               gauge("envoy_server_total_connections", {}, 7)]
    labels = {"namespace": "bank", "pod": f"{WAYPOINT}-6c9f8d7b5-k2xq4", "waypoint": WAYPOINT}
    return Target("/stats/prometheus", labels, "istio", WAYPOINT, series)


def _sidecar() -> Target:
    """The sidecar of shop/frontend reporting its outbound requests to the ambient accounts."""
    series: list[Series] = []
    for edge in L7_EDGES:
        if edge.source is FRONTEND:
            labels = {**_waypoint_labels(edge), "reporter": "source", "connection_security_policy": "unknown"}
            series.append(counter("istio_requests_total", labels, edge.rate))
            series += histogram("istio_request_duration_milliseconds", labels, edge.rate)
    return Target("/stats/prometheus", {"namespace": "shop", "pod": "frontend-7d4b9c-x2x7q"}, "istio", "frontend", series)


def mixed(now: float) -> list[Target]:
    """A mixed mesh: the replayed sidecar mesh (tests/support/meshdata_more.py: `shop`, `payments`,
    istiod) with the ambient `bank` beside it: both ztunnels, the waypoint, and shop/frontend's
    sidecar also calling the ambient accounts; through the waypoint also a failing gRPC call
    (L7_GRPC), and the kubelet's cAdvisor series of the ztunnels."""
    sidecars = meshdata_more.istio(now)
    *ztunnels, _, frontend = ambient(now)
    (pod,) = [t for t in sidecars if t.labels == frontend.labels]
    pod.series += frontend.series
    return sidecars + ztunnels + [_waypoint(now, L7_EDGES + L7_GRPC), _kubelet()]


def ambient(now: float) -> list[Target]:
    """Both ztunnels, the bank waypoint and the shop sidecar, as the rendered istio-ztunnels,
    istio-waypoints and istio-proxies jobs label them."""
    return [*(_ztunnel(node, now) for node in NODES), _waypoint(now), _sidecar()]

