"""Istio (sidecar Envoy with Istio's stats filter, istiod).

Every istio_* series is reported twice, by the source and by the destination proxy; meshobs
reads only `reporter="destination"`, the side that knows `connection_security_policy` and sees
what really reached the workload. Envoy's own ssl.* stats are dropped by Istio's default stats
filter, so TLS failures come from the meshobs exporter (with the proxyStatsMatcher that
`meshobs build` renders for Istio)."""

from meshobs.meshes.base import ControlPlane, Dialect
from meshobs.meshes.envoy import ENVOY_RBAC, ENVOY_TLS
from meshobs.meshes.proxy import (
    ALLOWED, DENIED, DRY_RUN_ALLOWED, DRY_RUN_DENIED, PLAINTEXT, CertFamily, PodDiscovery, ProxyMetrics, Rule, all_of,
    label_is,
)
from meshobs.promql import Source

_DESTINATION = ('reporter="destination"',)
_LABELS = {
    "destination_namespace": "destination_workload_namespace",
    "destination_service": "destination_service_name",
    "destination_workload": "destination_workload",
    "source_namespace": "source_workload_namespace",
    "source_workload": "source_workload",
    "source_principal": "source_principal",  # the caller's SPIFFE identity (`unknown` when unmeshed)
    "code": "response_code",
}

# Istio's tag rules fold the decision into the `authz_enforce_result` label (dry-run series carry
# authz_dry_run_* instead). Whether the filter's stat prefix becomes a label or stays in the name
# depends on the Istio version's regexes: `envoy_http_rbac{http_conn_manager_prefix=...}` or
# `envoy_http_inbound_0_0_0_0_8080_rbac{...}`; both are read.
_ISTIO_RBAC_NAME = r"envoy_(?:http|tcp)_(?:.+_)?rbac|envoy_rbac"
_ISTIO = (
    *(Rule(family, (key, ""), label_is(label, result), pattern=_ISTIO_RBAC_NAME)
      for family in ("envoy_http_", "envoy_tcp_", "envoy_rbac")
      for key, label, result in ((ALLOWED, "authz_enforce_result", "allowed"), (DENIED, "authz_enforce_result", "denied"),
                                 (DRY_RUN_ALLOWED, "authz_dry_run_result", "allowed"),
                                 (DRY_RUN_DENIED, "authz_dry_run_result", "denied"))),
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

ISTIO = Dialect(
    name="istio",
    title="Istio",
    proxy=ProxyMetrics("istio", "/stats/prometheus", ENVOY_TLS + ENVOY_RBAC + _ISTIO, (_ISTIO_CERTS,)),
    # 15000 (admin) is localhost-only in Istio; 15090 serves the Envoy stats.
    discovery=PodDiscovery(15090, "/stats/prometheus", annotations=("sidecar.istio.io/status",)),
    # pilot-agent's merged app + Envoy metrics, what Istio's own prometheus.io/port annotation names
    other_metrics_ports=(15020,),
    requests=Source(
        "istio_requests_total",
        _DESTINATION,
        _LABELS,
        facets={
            "5xx": ('response_code=~"5.."',),
            "403": ('response_code="403"',),
            "mtls": ('connection_security_policy="mutual_tls"',),
            "plaintext": ('connection_security_policy="none"',),
        },
    ),
    edges=Source(
        "istio_requests_total",
        _DESTINATION,
        _LABELS,
        facets={"5xx": ('response_code=~"5.."',), "403": ('response_code="403"',),
                "mtls": ('connection_security_policy="mutual_tls"',),
                "plaintext": ('connection_security_policy="none"',)},
    ),
    request_duration=Source("istio_request_duration_milliseconds_bucket", _DESTINATION, _LABELS, scale=0.001),
    # Without the exporter, 403s answered at the destination are the closest native signal:
    # Istio's RBAC denials carry no response flag that sets them apart from an app's 403.
    authz_denied=(
        Source("istio_requests_total", _DESTINATION + ('response_code="403"',), _LABELS),
    ),
    tcp_connections=(Source("istio_tcp_connections_opened_total", _DESTINATION, _LABELS),),  # TCP services only
    config_rejected=(Source("pilot_total_xds_rejects"),),
    control_plane=ControlPlane(
        up=Source("istio_build", ('component="pilot"',)),
        connected_proxies=Source("pilot_xds"),
        config_pushes=Source("pilot_xds_pushes"),
        push_duration=Source("pilot_proxy_convergence_time_bucket"),
        ca_expiry=Source("citadel_server_root_cert_expiry_timestamp"),
        cert_issuance_errors=Source("citadel_server_csr_sign_err_count"),
    ),
    extra_catalogue=(
        "istio_request_duration_milliseconds_sum",
        "istio_request_duration_milliseconds_count",
        "istio_request_bytes_bucket",
        "istio_response_bytes_bucket",
        "istio_tcp_sent_bytes_total",
        "istio_tcp_received_bytes_total",
        "istio_tcp_connections_opened_total",
        "istio_tcp_connections_closed_total",
        "pilot_total_xds_internal_errors",
        "pilot_xds_push_time_bucket",
        "pilot_conflict_inbound_listener",
        "citadel_server_cert_chain_expiry_timestamp",
        "citadel_server_csr_count",
        "citadel_server_authentication_failure_count",
        "envoy_http_rbac",
        "envoy_listener_ssl_fail_verify_error",
    ),
)
