"""Consul service mesh (Envoy sidecars or consul-dataplane).

Consul's Envoy bootstrap tags every stat with `local_cluster` (the sidecar's own service) and
upstream stats with `consul_destination_*`. Server-side numbers come from the public listener
(`envoy_http_conn_manager_prefix="public_listener"`), which only has response classes; per-code
counts (403) exist only upstream, on the caller's side. `namespace` is the Kubernetes namespace,
attached by the scrape job. Intentions are Envoy RBAC filters: L4 under stat prefix
`connect_authz`, L7 as the HTTP RBAC filter."""

from meshobs.meshes.base import ControlPlane, Dialect
from meshobs.meshes.envoy import ENVOY_CERTS, ENVOY_RBAC, ENVOY_TLS
from meshobs.meshes.proxy import PodDiscovery, ProxyMetrics
from meshobs.promql import Source

_PUBLIC = ('envoy_http_conn_manager_prefix="public_listener"',)
_LOCAL = {"destination_namespace": "namespace", "destination_workload": "local_cluster"}
_LOCAL_SERVICE = dict(_LOCAL, destination_service="local_cluster", code="envoy_response_code_class")

_TLS_FAILURE_COUNTERS = {
    "envoy_listener_ssl_fail_verify_no_cert": "no_client_cert",
    "envoy_listener_ssl_fail_verify_error": "untrusted_cert",
    "envoy_listener_ssl_fail_verify_san": "san_mismatch",
    "envoy_listener_ssl_connection_error": "not_tls",
}

CONSUL = Dialect(
    name="consul",
    title="Consul",
    proxy=ProxyMetrics("consul", "/stats/prometheus", ENVOY_TLS + ENVOY_RBAC, (ENVOY_CERTS,), admin_certs=True),
    # consul-dataplane merges Envoy's and the app's metrics on 20200 unless the pod says otherwise.
    discovery=PodDiscovery(
        20200, "/metrics", annotations=("consul.hashicorp.com/connect-inject-status",), annotation_value="injected",
        port_annotation="consul.hashicorp.com/prometheus-scrape-port",
        path_annotation="consul.hashicorp.com/prometheus-scrape-path",
    ),
    requests=Source(
        "envoy_http_downstream_rq_xx", _PUBLIC, _LOCAL_SERVICE, facets={"5xx": ('envoy_response_code_class="5"',)}
    ),
    edges=Source(
        "envoy_cluster_upstream_rq",
        ('consul_destination_service!=""',),
        {
            "source_namespace": "namespace",
            "source_workload": "local_cluster",
            "destination_namespace": "consul_destination_namespace",
            "destination_service": "consul_destination_service",
            "destination_workload": "consul_destination_service",
            "code": "envoy_response_code",
        },
        facets={"5xx": ('envoy_response_code=~"5.."',), "403": ('envoy_response_code="403"',)},
    ),
    request_duration=Source("envoy_http_downstream_rq_time_bucket", _PUBLIC, _LOCAL_SERVICE, scale=0.001),
    authz_denied=(Source(("envoy_rbac_denied", "envoy_http_rbac_denied"), (), _LOCAL),),
    authz_allowed=(Source(("envoy_rbac_allowed", "envoy_http_rbac_allowed"), (), _LOCAL),),
    tls_handshakes=(Source("envoy_listener_ssl_handshake", (), _LOCAL),),
    tls_failures=tuple(
        Source(metric, (), _LOCAL, constant_labels={"reason": reason}) for metric, reason in _TLS_FAILURE_COUNTERS.items()
    ),
    cert_expiry=(
        Source(
            "envoy_listener_ssl_certificate_expiration_unix_time_seconds",
            ('envoy_tls_certificate!~".*ca_cert.*"',),
            _LOCAL,
            constant_labels={"cert": "leaf"},
        ),
    ),
    # the public listener is an HTTP connection manager (HTTP services) or a tcp_proxy (TCP services)
    tcp_connections=(Source("envoy_http_downstream_cx_total", _PUBLIC, _LOCAL),
                     Source("envoy_tcp_downstream_cx_total", ('envoy_tcp_prefix="public_listener"',), _LOCAL)),
    config_rejected=(
        Source(("envoy_cluster_manager_cds_update_rejected", "envoy_listener_manager_lds_update_rejected"), (), _LOCAL),
    ),
    control_plane=ControlPlane(
        connected_proxies=Source("envoy_control_plane_connected_state", (), _LOCAL),
        config_pushes=Source(("envoy_cluster_manager_cds_update_success", "envoy_listener_manager_lds_update_success"), (), _LOCAL),
    ),
    extra_catalogue=(
        "envoy_cluster_upstream_rq_total",
        "envoy_cluster_upstream_rq_xx",
        "envoy_cluster_upstream_rq_time_bucket",
        "envoy_cluster_upstream_cx_active",
        "envoy_http_downstream_rq_total",
        "envoy_http_downstream_cx_active",
        "envoy_tcp_downstream_cx_total",
        "envoy_server_live",
    ),
)
