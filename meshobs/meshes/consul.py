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
from meshobs.meshes.envoy import ENVOY_CERTS, ENVOY_RBAC, ENVOY_TLS, admin_stats_filter
from meshobs.meshes.proxy import PodDiscovery, ProxyMetrics
from meshobs.promql import Source

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

CONSUL = Dialect(
    name="consul",
    title="Consul",
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
)
