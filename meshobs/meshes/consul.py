"""Consul service mesh (Envoy sidecars or consul-dataplane).

Consul's Envoy bootstrap tags every stat with fixed tags: `local_cluster` (the sidecar's own
service), `consul_source_service`, `consul_source_namespace`, ...; upstream stats also carry
`consul_destination_*`. Every source here requires `local_cluster`: another Envoy scraped by the
same Prometheus (a gateway) has none of these tags, whatever its job is called.

Two namespaces exist and are kept apart: `namespace` is the Kubernetes namespace the scrape job
attaches, and names a workload (as the exporter does); `consul_*_namespace` is the Consul
namespace, and names a service, since a caller's upstream stats know only the Consul namespace
of the service they call. Service numbers take, per service, the larger of the destination's
public listener (`envoy_http_conn_manager_prefix="public_listener"`) and its callers' upstream
counts, the only ones to see calls no destination pod answered. Intentions are Envoy RBAC
filters: L4 under stat prefix `connect_authz`, L7 as the HTTP RBAC filter."""

from meshobs.meshes.base import ControlPlane, Dialect
from meshobs.meshes.crosscluster import CrossCluster
from meshobs.meshes.extended import POD_OWNER, Client, ControlPlaneDetail, Http, ProxyHealth, Tcp
from meshobs.meshes.envoy import ENVOY_CERTS, ENVOY_RBAC, ENVOY_TLS, admin_stats_filter
from meshobs.meshes.proxy import PodDiscovery, ProxyMetrics
from meshobs.promql import FirstOf, Source

_CONSUL = ('local_cluster!=""',)  # a bootstrap tag: only Consul's sidecars have it
_PUBLIC = _CONSUL + ('envoy_http_conn_manager_prefix="public_listener"',)
_LOCAL = {"destination_namespace": "namespace", "destination_workload": "local_cluster"}
_LOCAL_WORKLOAD = dict(_LOCAL, code="envoy_response_code_class")
_LOCAL_SERVICE = {"destination_namespace": "consul_source_namespace", "destination_service": "local_cluster",
                  "code": "envoy_response_code_class"}
_UPSTREAM = _CONSUL + ('consul_destination_service!=""',)
_UPSTREAM_SERVICE = {"destination_namespace": "consul_destination_namespace", "destination_service": "consul_destination_service",
                     "code": "envoy_response_code_class"}
_ERROR = {"error": ('envoy_response_code_class="5"',)}

_TLS_FAILURE_COUNTERS = {
    "envoy_listener_ssl_fail_verify_no_cert": "no_client_cert",
    "envoy_listener_ssl_fail_verify_error": "untrusted_cert",
    "envoy_listener_ssl_fail_verify_san": "san_mismatch",
    "envoy_listener_ssl_connection_error": "not_tls",
}

# --- TCP, the caller's side, sizes, gRPC, proxies, control plane (meshobs/meshes/extended.py) ---
_TCP_PUBLIC = _CONSUL + ('envoy_tcp_prefix="public_listener"',)
# a TCP service's sidecar: its workload in its Kubernetes namespace, and the service it serves
_TCP_LABELS = dict(_LOCAL, destination_service="local_cluster")
_CALLER = {
    "source_namespace": "namespace",
    "source_workload": "local_cluster",
    "destination_service": "consul_destination_service",
    "destination_workload": "consul_destination_service",
    "code": "envoy_response_code",
}
_PROXY = {"namespace": "namespace", "workload": "local_cluster"}
_SERVER_SUMMARY_P99 = ('quantile="0.99"',)
_PUBLIC_IS_MTLS = ("Consul's public listener accepts mutual TLS only: a plaintext connection is refused (a TLS "
                   "failure, reason not_tls), so every TCP connection served is mTLS")
_NO_SIZES = "Envoy keeps no per-request size histograms; the TCP byte counters are charted instead"

CONSUL_TCP = Tcp(
    opened=Source("envoy_tcp_downstream_cx_total", _TCP_PUBLIC, _TCP_LABELS),
    # connections from the sidecar to its own app: the ones a TCP service's public listener forwards
    active=Source("envoy_cluster_upstream_cx_active", _CONSUL + ('envoy_cluster_name="local_app"',), _TCP_LABELS),
    sent_bytes=Source("envoy_tcp_downstream_cx_tx_bytes_total", _TCP_PUBLIC, _TCP_LABELS),
    received_bytes=Source("envoy_tcp_downstream_cx_rx_bytes_total", _TCP_PUBLIC, _TCP_LABELS),
    client_sent_bytes=Source("envoy_cluster_upstream_cx_tx_bytes_total", _UPSTREAM, _CALLER),
    client_received_bytes=Source("envoy_cluster_upstream_cx_rx_bytes_total", _UPSTREAM, _CALLER),
    connect_failures=Source("envoy_cluster_upstream_cx_connect_fail", _UPSTREAM, _CALLER),
    unavailable={"closed": "Envoy's tcp_proxy counts opened connections only; closed ones are counted by the "
                           "listener, which Consul names by address, not as the public listener",
                 "opened.mtls": _PUBLIC_IS_MTLS},
)
CONSUL_CLIENT = Client(
    requests=Source("envoy_cluster_upstream_rq", _UPSTREAM, _CALLER,
                    facets={"5xx": ('envoy_response_code=~"5.."',), "4xx": ('envoy_response_code=~"4.."',)}),
    duration=Source("envoy_cluster_upstream_rq_time_bucket", _UPSTREAM, _CALLER, scale=0.001),
)
CONSUL_HTTP = Http(
    client_errors=('envoy_response_code_class="4"',),
    inbound_duration=Source("envoy_http_downstream_rq_time_bucket", _PUBLIC, _LOCAL_WORKLOAD, scale=0.001),
    unavailable={"grpc": "Envoy counts gRPC status only with the grpc_stats filter, which Consul does not configure: "
                         "a gRPC failure is an HTTP 200 to Consul's sidecars",
                 "request_bytes": _NO_SIZES, "response_bytes": _NO_SIZES,
                 "routes": "Envoy counts requests per route only for virtual clusters, which Consul does not configure"},
)
CONSUL_PROXY_HEALTH = ProxyHealth(
    live=Source("envoy_server_live", _CONSUL, _PROXY),
    memory=Source("envoy_server_memory_allocated", _CONSUL, _PROXY),
    cpu=Source("container_cpu_usage_seconds_total", ('container=~"consul-dataplane|envoy-sidecar"',),
               {"namespace": "namespace", "workload": POD_OWNER}),
    connections=Source("envoy_server_total_connections", _CONSUL, _PROXY),
    endpoints=Source("envoy_cluster_membership_total", _UPSTREAM, _CALLER),
    healthy_endpoints=Source("envoy_cluster_membership_healthy", _UPSTREAM, _CALLER),
    no_healthy_upstream=Source("envoy_cluster_upstream_cx_none_healthy", _UPSTREAM, _CALLER),
    upstream_connect_failures=Source("envoy_cluster_upstream_cx_connect_fail", _UPSTREAM, _CALLER),
    circuit_breaker_overflow=Source(("envoy_cluster_upstream_rq_pending_overflow", "envoy_cluster_upstream_cx_overflow"),
                                    _UPSTREAM, _CALLER),
    outlier_ejections=Source("envoy_cluster_outlier_detection_ejections_active", _UPSTREAM, _CALLER),
)
# Consul servers (their /v1/agent/metrics?format=prometheus): summaries in milliseconds.
CONSUL_CONTROL_PLANE_DETAIL = ControlPlaneDetail(
    versions=Source("consul_version", (), {"version": "version"}),
    instances=Source("consul_runtime_alloc_bytes"),  # one series per server
    memory=Source("consul_runtime_alloc_bytes"),
    goroutines=Source("consul_runtime_num_goroutines"),
    raft_commit_time=Source("consul_raft_commitTime", _SERVER_SUMMARY_P99, scale=0.001),
    leader_last_contact=Source("consul_raft_leader_lastContact", _SERVER_SUMMARY_P99, scale=0.001),
    autopilot_healthy=Source("consul_autopilot_healthy"),
    leader_elections=Source("consul_raft_state_candidate"),
    raft_applies=Source("consul_raft_apply"),
    connected_dataplanes=Source("consul_xds_server_streams"),
    # reported by the leader only: absent without a leader
    required=(Source("consul_autopilot_healthy"),),
    unavailable={
        "cpu": "Consul's telemetry has no CPU counter",
        "pushes_by_type": "Consul streams xDS deltas per proxy and counts no pushes by type",
        "push_errors": "Consul counts no failed pushes; the proxies' rejections are MeshProxyConfigRejected",
        "push_time": "Consul times no pushes", "grpc_requests": "Consul's xDS streams are charted as connected dataplanes",
        "webhook_injections": "consul-k8s's injector exports no admission counters",
        "webhook_validations": "Consul validates configuration entries in its API, with no counter",
    },
)

# --- calls between clusters (meshobs/meshes/crosscluster.py) ---
# An upstream cluster is named by its SNI: `<svc>.<ns>[.<partition>].<dc>.internal.<trust domain>.consul`
# in a (WAN-federated) datacenter, `<svc>.<ns>.<peer>.external.<trust domain>.consul` behind a
# cluster peering; Consul's bootstrap tags cut `consul_destination_datacenter` or
# `consul_destination_peer` out of it, and tags the caller's own `consul_source_datacenter`.
# Every upstream is counted (local calls are pairs of one datacenter).
_CROSS_CLUSTER_LABELS = dict(_UPSTREAM_SERVICE, code="envoy_response_code", source_cluster="consul_source_datacenter",
                             destination_cluster=FirstOf(("consul_destination_peer", "consul_destination_datacenter")),
                             source_namespace="consul_source_namespace", source_workload="local_cluster")
CONSUL_CROSS_CLUSTER = CrossCluster(
    # an upstream to a mesh service is mutual TLS by construction: there is no plaintext upstream to count
    requests=Source("envoy_cluster_upstream_rq", _UPSTREAM, _CROSS_CLUSTER_LABELS,
                    facets={"error": CONSUL_CLIENT.requests.facets["5xx"]}),
    duration=Source("envoy_cluster_upstream_rq_time_bucket", _UPSTREAM, _CROSS_CLUSTER_LABELS, scale=0.001),
    reporter="caller",
    only_remote=False,
    about="Consul: the caller's upstream clusters, by datacenter (WAN federation) or peer (cluster peering), "
          "from their SNI names",
    # the servers' view of each cluster peering (consul.peering.healthy, set per peer by the leader every
    # 9s: 1 healthy, 0 not or never connected; agent/consul/leader_peering.go). Every agent also serves
    # the declared gauge without labels at 0 (go-metrics initializes declared gauges at zero): no peering.
    remote_up=Source("consul_peering_healthy", ('peer_name!=""',), {"destination_cluster": "peer_name"}),
)

CONSUL = Dialect(
    name="consul",
    title="Consul",
    edges_in_workload_namespaces=False,
    proxy=ProxyMetrics("consul", "/stats/prometheus", ENVOY_TLS + ENVOY_RBAC, (ENVOY_CERTS,), admin_certs=True,
                       stats_filter=admin_stats_filter()),
    # consul-dataplane merges Envoy's and the app's metrics on 20200 unless the pod says otherwise.
    discovery=PodDiscovery(
        20200, "/metrics", annotations=("consul.hashicorp.com/connect-inject-status",), annotation_value="injected",
        port_annotation="consul.hashicorp.com/prometheus-scrape-port",
        path_annotation="consul.hashicorp.com/prometheus-scrape-path",
    ),
    requests=Source("envoy_http_downstream_rq_xx", _PUBLIC, _LOCAL_WORKLOAD, facets=_ERROR),
    service_requests=(
        Source("envoy_http_downstream_rq_xx", _PUBLIC, _LOCAL_SERVICE, facets=_ERROR),
        Source("envoy_cluster_upstream_rq_xx", _UPSTREAM, _UPSTREAM_SERVICE, facets=_ERROR),
    ),
    edges=Source(
        "envoy_cluster_upstream_rq",
        _UPSTREAM,
        {
            "source_namespace": "consul_source_namespace",
            "source_workload": "local_cluster",
            "destination_namespace": "consul_destination_namespace",
            "destination_service": "consul_destination_service",
            # the callee's sidecar is tagged local_cluster=<its service>: the same name as its workload
            "destination_workload": "consul_destination_service",
            "code": "envoy_response_code",
        },
        facets={"error": ('envoy_response_code=~"5.."',), "403": ('envoy_response_code="403"',)},
    ),
    request_duration=Source("envoy_http_downstream_rq_time_bucket", _PUBLIC, _LOCAL_SERVICE, scale=0.001),
    inbound_duration=Source("envoy_http_downstream_rq_time_bucket", _PUBLIC, _LOCAL_WORKLOAD, scale=0.001),
    authz_denied=(Source(("envoy_rbac_denied", "envoy_http_rbac_denied"), _CONSUL, _LOCAL),),
    authz_allowed=(Source(("envoy_rbac_allowed", "envoy_http_rbac_allowed"), _CONSUL, _LOCAL),),
    tls_handshakes=(Source("envoy_listener_ssl_handshake", _CONSUL, _LOCAL),),
    # A refused plaintext connection is a `connection_error` (reason not_tls), never plaintext traffic.
    tls_failures=tuple(
        Source(metric, _CONSUL, _LOCAL, constant_labels={"reason": reason}) for metric, reason in _TLS_FAILURE_COUNTERS.items()
    ),
    cert_expiry=(
        Source(
            "envoy_listener_ssl_certificate_expiration_unix_time_seconds",
            _CONSUL + ('envoy_tls_certificate!~".*ca_cert.*"',),
            _LOCAL,
            constant_labels={"cert": "leaf"},
        ),
    ),
    # the public listener is an HTTP connection manager (HTTP services) or a tcp_proxy (TCP services)
    tcp_connections=(Source("envoy_http_downstream_cx_total", _PUBLIC, _LOCAL),
                     Source("envoy_tcp_downstream_cx_total", ('envoy_tcp_prefix="public_listener"',), _LOCAL)),
    config_rejected=(
        Source(("envoy_cluster_manager_cds_update_rejected", "envoy_listener_manager_lds_update_rejected"), _CONSUL, _LOCAL),
    ),
    control_plane=ControlPlane(
        connected_proxies=Source("envoy_control_plane_connected_state", _CONSUL, _LOCAL),
        config_pushes=Source(("envoy_cluster_manager_cds_update_success", "envoy_listener_manager_lds_update_success"), _CONSUL, _LOCAL),
    ),
    leaf_lifetime="72h",
    extra_catalogue=(
        "envoy_cluster_upstream_rq_total",
        "envoy_cluster_upstream_rq_time_bucket",
        "envoy_cluster_upstream_cx_active",
        "envoy_http_downstream_rq_total",
        "envoy_http_downstream_cx_active",
        "envoy_tcp_downstream_cx_total",
        "envoy_server_live",
    ),
    tcp=CONSUL_TCP,
    client=CONSUL_CLIENT,
    http=CONSUL_HTTP,
    proxy_health=CONSUL_PROXY_HEALTH,
    control_plane_detail=CONSUL_CONTROL_PLANE_DETAIL,
    cross_cluster=CONSUL_CROSS_CLUSTER,
)
