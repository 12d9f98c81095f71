"""A realistic Envoy sidecar exposition (Istio-sized: many outbound clusters) for the benchmarks.

Per cluster: 24 upstream counters/gauges and a 20-bucket latency histogram, as Envoy writes them
on /stats/prometheus (`# TYPE` lines, no `# HELP`, empty braces for label-less series); 30 HTTP
connection managers with 30 stats each (their `envoy_http_` prefix is one the Istio dialect keeps,
so ~900 lines are parsed, not just the ~20 it uses). A few inbound listeners carry the ssl and
RBAC families the exporter reads.
"""

from __future__ import annotations

CLUSTER_FAMILIES = [
    "upstream_cx_total", "upstream_cx_active", "upstream_cx_connect_fail", "upstream_cx_connect_timeout",
    "upstream_cx_destroy", "upstream_cx_destroy_local", "upstream_cx_destroy_remote", "upstream_cx_rx_bytes_total",
    "upstream_cx_tx_bytes_total", "upstream_rq_total", "upstream_rq_active", "upstream_rq_pending_total",
    "upstream_rq_pending_active", "upstream_rq_timeout", "upstream_rq_retry", "upstream_rq_cancelled",
    "membership_healthy", "membership_total", "membership_change", "lb_healthy_panic", "update_success",
    "update_attempt", "retry_or_shadow_abandoned", "bind_errors",
]
HCMS = 30
HCM_FAMILIES = [
    "downstream_cx_total", "downstream_cx_active", "downstream_cx_destroy", "downstream_cx_http1_total",
    "downstream_cx_http2_total", "downstream_cx_rx_bytes_total", "downstream_cx_tx_bytes_total", "downstream_rq_total",
    "downstream_rq_active", "downstream_rq_completed", "downstream_rq_http1_total", "downstream_rq_http2_total",
    "downstream_rq_timeout", "downstream_rq_rx_reset", "downstream_rq_tx_reset", "downstream_rq_non_relative_path",
    "downstream_rq_idle_timeout", "downstream_rq_overload_close", "downstream_rq_ws_on_non_ws_route", "no_route",
    "no_cluster", "rq_total", "rq_direct_response", "rq_redirect", "rq_reset_after_downstream_response_started",
    "passthrough_internal_redirect_bad_location", "downstream_flow_control_paused_reading_total",
    "downstream_flow_control_resumed_reading_total", "downstream_cx_upgrades_total", "downstream_cx_upgrades_active",
]
BUCKETS = ["0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "30000",
           "60000", "300000", "600000", "1800000", "3600000", "+Inf"]


def envoy_exposition(clusters: int, seed: int = 0) -> bytes:
    lines = []
    for family in CLUSTER_FAMILIES:
        lines.append(f"# TYPE envoy_cluster_{family} counter")
        for c in range(clusters):
            lines.append(f'envoy_cluster_{family}{{cluster_name="outbound|8080||svc-{c}.ns-{c % 17}.svc.cluster.local"}} {(c * 7 + seed) % 100000}')
    lines.append("# TYPE envoy_cluster_upstream_rq_time histogram")
    for c in range(clusters):
        name = f"outbound|8080||svc-{c}.ns-{c % 17}.svc.cluster.local"
        for i, le in enumerate(BUCKETS):
            lines.append(f'envoy_cluster_upstream_rq_time_bucket{{cluster_name="{name}",le="{le}"}} {i * 3 + seed}')
        lines.append(f'envoy_cluster_upstream_rq_time_sum{{cluster_name="{name}"}} 1234.5')
        lines.append(f'envoy_cluster_upstream_rq_time_count{{cluster_name="{name}"}} {57 + seed}')
    for listener in ("0.0.0.0_15006", "virtualInbound", "10.0.0.1_8080"):
        for stat, value in (("handshake", 100 + seed), ("fail_verify_no_cert", 2), ("fail_verify_error", 1),
                            ("fail_verify_san", 0), ("connection_error", 3)):
            lines.append(f"# TYPE envoy_listener_ssl_{stat} counter")
            lines.append(f'envoy_listener_ssl_{stat}{{listener_address="{listener}"}} {value}')
        lines.append("# TYPE envoy_listener_ssl_certificate_expiration_unix_time_seconds gauge")
        lines.append(f'envoy_listener_ssl_certificate_expiration_unix_time_seconds{{listener_address="{listener}",tls_certificate="default"}} 1800000000')
    # per HTTP connection manager (Istio: one per inbound port and outbound port)
    for family in HCM_FAMILIES:
        lines.append(f"# TYPE envoy_http_{family} counter")
        for port in range(HCMS):
            direction = "inbound" if port < 5 else "outbound"
            lines.append(f'envoy_http_{family}{{http_conn_manager_prefix="{direction}_0.0.0.0_{8000 + port}"}} {port + seed}')
    lines.append("# TYPE envoy_http_rbac counter")
    lines.append(f'envoy_http_rbac{{authz_enforce_result="allowed",http_conn_manager_prefix="inbound_0.0.0.0_8080"}} {500 + seed}')
    lines.append(f'envoy_http_rbac{{authz_enforce_result="denied",http_conn_manager_prefix="inbound_0.0.0.0_8080"}} {7 + seed}')
    lines.append("# TYPE envoy_server_live gauge")
    lines.append("envoy_server_live{} 1")
    return ("\n".join(lines) + "\n").encode()


def clusters_for_lines(lines: int) -> int:
    per_cluster = len(CLUSTER_FAMILIES) + len(BUCKETS) + 2
    return max(1, (lines - HCMS * len(HCM_FAMILIES)) // per_cluster)


LINKERD_ROUTES = ["/api/v1/orders", "/api/v1/cart", "/api/v1/users", "/healthz", "/api/v1/search", "/metrics"]
LINKERD_BUCKETS = ["1", "2", "3", "4", "5", "10", "20", "30", "40", "50", "100", "200", "300", "400", "500",
                   "1000", "2000", "3000", "4000", "5000", "10000", "20000", "30000", "40000", "50000", "+Inf"]


def linkerd_exposition(authorities: int, seed: int = 0) -> bytes:
    """A linkerd2-proxy /metrics (Linkerd-sized: per authority, request/response counters and a
    latency histogram), with the inbound authz, tcp_open and identity families the exporter reads."""
    lines = ["# HELP request_total Total count of HTTP requests.", "# TYPE request_total counter"]
    for a in range(authorities):
        authority = f"svc-{a}.ns-{a % 7}.svc.cluster.local:8080"
        direction = "inbound" if a % 4 == 0 else "outbound"
        tls = 'tls="true"' if a % 5 else 'tls="no_identity",no_tls_reason="not_provided_by_remote"'
        base = f'direction="{direction}",authority="{authority}",target_addr="10.0.{a % 250}.7:8080",{tls}'
        lines.append(f"request_total{{{base}}} {100 + a + seed}")
        lines.append(f'response_total{{{base},status_code="200",classification="success",error=""}} {90 + a + seed}')
        for i, le in enumerate(LINKERD_BUCKETS):
            lines.append(f'response_latency_ms_bucket{{{base},status_code="200",le="{le}"}} {i * 5 + seed}')
        lines.append(f"tcp_open_total{{{base},peer=\"src\"}} {a + seed}")
    lines.append('inbound_http_authz_allow_total{target_addr="0.0.0.0:8080",srv_kind="default",srv_name="all-authenticated",authz_kind="default",authz_name="all-authenticated"} ' + str(500 + seed))
    lines.append('inbound_http_authz_deny_total{target_addr="0.0.0.0:8080",srv_kind="default",srv_name="all-authenticated"} ' + str(7 + seed))
    lines.append("# TYPE identity_cert_expiration_timestamp_seconds gauge")
    lines.append("identity_cert_expiration_timestamp_seconds 1800000000")
    lines.append("process_start_time_seconds 1700000000")
    return ("\n".join(lines) + "\n").encode()


def authorities_for_bytes(size: int) -> int:
    per_authority = len(linkerd_exposition(2)) - len(linkerd_exposition(1))
    return max(1, (size - len(linkerd_exposition(0))) // per_authority)
