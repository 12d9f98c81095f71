"""Istio (sidecar Envoy with Istio's stats filter, istiod), in both data planes: sidecars, and
ambient mode's ztunnels (L4) and waypoints (L7) (their facts: meshobs/meshes/ambient.py).

Every istio_* series is reported twice, by the source and by the destination proxy. Workload
numbers (mTLS, plaintext, what reached a pod) read the server's side, the side that knows
`connection_security_policy`: `reporter="destination"` (a sidecar, or at L4 the server's ztunnel)
and, at L7 for ambient servers, `reporter="waypoint"` (their waypoint; a request through it is one
request at L7 but two connections at L4, and only the L7 count is a request count). Service
numbers take, per service, the larger of the two reporters' counts: a call no destination pod answered (503 `UH`/`UF`, timeouts) is recorded only
by the caller, with the destination service's name and namespace but an `unknown` workload.
A failed gRPC call is an HTTP 200 with `grpc_response_status` other than 0. Envoy's own ssl.* stats are dropped by Istio's default stats
filter, so TLS failures come from the meshobs exporter (with the proxyStatsMatcher that
`meshobs build` renders for Istio)."""

from dataclasses import replace

from meshobs.meshes import ambient, ztunnel
from meshobs.meshes.base import ControlPlane, Dialect
from meshobs.meshes.crosscluster import CrossCluster
from meshobs.meshes.extended import POD_OWNER, Client, ControlPlaneDetail, Http, ProxyHealth, Tcp
from meshobs.meshes.envoy import ENVOY_RBAC, ENVOY_TLS, admin_stats_filter
from meshobs.meshes.proxy import (
    ALLOWED, DENIED, DRY_RUN_ALLOWED, DRY_RUN_DENIED, FAILURES, PLAINTEXT, CertFamily, PodDiscovery, ProxyMetrics, Rule,
    all_of, label_is,
)
from meshobs.promql import Cut, Source

_DESTINATION = ('reporter="destination"',)
# The server's side at L7: a sidecar server's own proxy, or an ambient server's waypoint. The two
# never describe the same request to the same server (docs/ambient.md).
_SERVER = (f'reporter=~"destination|{ambient.WAYPOINT_REPORTER}"',)
# Calls out of the mesh (PassthroughCluster, BlackHoleCluster) have no service namespace: not a mesh service
_SOURCE = ('reporter="source"', 'destination_service_namespace!="unknown"')
_ERRORS = ambient.L7_ERRORS
# the sidecars' and waypoints' (Envoy stats filter) matchers the facets below share
_MTLS = ('connection_security_policy="mutual_tls"',)
_NO_TLS = ('connection_security_policy="none"',)
_403 = ('response_code="403"',)
_4XX = ('response_code=~"4.."',)
_SERVICE_LABELS = {
    "destination_namespace": "destination_service_namespace",
    "destination_service": "destination_service_name",
    "code": "response_code",
}
_LABELS = {
    "destination_namespace": "destination_workload_namespace",
    "destination_service": "destination_service_name",
    "destination_workload": "destination_workload",
    "source_namespace": "source_workload_namespace",
    "source_workload": "source_workload",
    "source_principal": "source_principal",  # the caller's SPIFFE identity (`unknown` when unmeshed)
    # the caller's cluster as Istio names it (values.global.multiCluster.clusterName)
    "source_cluster": "source_cluster",
    "code": "response_code",
}

# Envoy's own stats carry only the pod (the scrape job's labels): its workload is the pod's owner.
_POD_WORKLOAD = {"destination_namespace": "namespace", "destination_workload": POD_OWNER}
_RBAC = ("envoy_http_rbac", "envoy_rbac")

# Istio's tag rules fold the decision into the `authz_enforce_result` label (dry-run series carry
# authz_dry_run_* instead). Whether the filter's stat prefix becomes a label or stays in the name
# depends on the Istio version's regexes: `envoy_http_rbac{http_conn_manager_prefix=...}` or
# `envoy_http_inbound_0_0_0_0_8080_rbac{...}`; both are read.
_ISTIO_RBAC_NAME = r"envoy_(?:http|tcp)_(?:.+_)?rbac|envoy_rbac"
# Its internal Envoy name (what the stats filter and Istio's proxyStatsMatcher match).
NO_FILTER_CHAIN_STAT = r"listener\..*\.no_filter_chain_match"
_ISTIO = (
    *(Rule(family, (key, ""), label_is(label, result), pattern=_ISTIO_RBAC_NAME, marker=f'{label}="')
      for family in ("envoy_http_", "envoy_tcp_", "envoy_rbac")
      for key, label, result in ((ALLOWED, "authz_enforce_result", "allowed"), (DENIED, "authz_enforce_result", "denied"),
                                 (DRY_RUN_ALLOWED, "authz_dry_run_result", "allowed"),
                                 (DRY_RUN_DENIED, "authz_dry_run_result", "denied"))),
    # STRICT mode: the inbound listener's filter chains all require TLS, so plaintext finds no
    # chain (`NR filter_chain_not_found`) and never reaches the TLS stack: a refused plaintext
    # connection. (Outbound listeners end in passthrough chains and do not miss.)
    Rule("envoy_listener_no_filter_chain_match", (FAILURES, "not_tls")),
    # No stand-in from istio_requests_total 403s: an application's own 403s look the same, and
    # a denial the exporter reports must be one the proxy's RBAC made.
    # PERMISSIVE mode: plaintext requests are served and labelled by the destination reporter
    Rule("istio_requests_total", (PLAINTEXT, ""),
         all_of(label_is("reporter", "destination"), label_is("connection_security_policy", "none"))),
)
# Istio has no tag for the certificate name: it stays in the metric name (`..._certificate_default_
# expiration_unix_time_seconds`, `ROOTCA`); a tls_certificate label is read where one exists.
_ISTIO_CERTS = CertFamily("envoy_listener_ssl_certificate_", ("tls_certificate", "envoy_tls_certificate"),
                          pattern=r"envoy_listener_ssl_certificate_(?:(.+)_)?expiration_unix_time_seconds")

# --- TCP, the caller's side, sizes, gRPC, proxies, control plane (meshobs/meshes/extended.py) ---
# Istio's `sent` is the response direction and `received` the request direction, from either
# reporter: what a caller sent is `received_bytes` as its own proxy reports it.
_CALLER = ('reporter="source"',)  # a sidecar client's proxy, or an ambient client's ztunnel (L4)
# Upstream failures as the proxy that called the server saw them: a sidecar's, and for ambient servers
# behind a waypoint the waypoint's (the client's sidecar then sees only the waypoint's answer, no
# flag). Never request counts: a sidecar client's request through a waypoint is in both.
_UPSTREAM_CALLER = (f'reporter=~"source|{ambient.WAYPOINT_REPORTER}"',)
_FLAGS = 'response_flags=~"(.*,)?({flags})(,.*)?"'
# Connections a caller could not open: Envoy's flags, and ztunnel's for ambient clients (it writes
# exactly one flag, from a vocabulary of its own)
_CONNECT_FLAGS = "|".join(("UF", "URX", *ambient.CONNECT_FLAGS))
_PROXY = {"namespace": "namespace", "workload": POD_OWNER}
_CALLER_OF_CLUSTER = {
    "source_namespace": "namespace", "source_workload": POD_OWNER,
    # an outbound cluster is `outbound|<port>|<subset>|<service>.<namespace>.svc.<domain>`
    "destination_service": Cut("cluster_name", ("outbound[|][0-9]+[|][^|]*[|]([^.]+)[.].*",),
                               "outbound[|][0-9]+[|][^|]*[|](?:{value})[.].*"),
}
_TCP_AND_HTTP_CALLS = ("istio_requests_total", "istio_tcp_connections_closed_total")
_ISTIOD = ('pod=~"istiod-.*"',)

# `reporter="destination"` TCP series are a sidecar's TCP services and, from ztunnels, every
# connection an ambient pod accepted (the client's ztunnel reports it again as `source`).
ISTIO_TCP = Tcp(
    opened=Source("istio_tcp_connections_opened_total", _DESTINATION, _LABELS,
                  facets={"mtls": _MTLS}),
    closed=Source("istio_tcp_connections_closed_total", _DESTINATION, _LABELS),
    sent_bytes=Source("istio_tcp_sent_bytes_total", _DESTINATION, _LABELS),
    received_bytes=Source("istio_tcp_received_bytes_total", _DESTINATION, _LABELS),
    client_sent_bytes=Source("istio_tcp_received_bytes_total", _CALLER, _LABELS),
    client_received_bytes=Source("istio_tcp_sent_bytes_total", _CALLER, _LABELS),
    connect_failures=Source("istio_tcp_connections_closed_total",
                            _UPSTREAM_CALLER + (_FLAGS.format(flags=f"{_CONNECT_FLAGS}|UH|UO"),), _LABELS),
    unavailable={"active": "Istio counts opened and closed connections only; their difference drifts with every "
                           "proxy restart, so meshobs charts the opened and closed rates instead"},
)
_CLIENT_FACETS = {"5xx": ('response_code=~"5.."',), "4xx": _4XX}
# An ambient client has no proxy of its own at L7: its calls are seen by the waypoint it calls
# through, which also sees a sidecar client's calls (then reported by both: the larger is taken).
ISTIO_CLIENT = Client(
    requests=(Source("istio_requests_total", _CALLER, _LABELS, facets=_CLIENT_FACETS),
              Source("istio_requests_total", ambient.WAYPOINT_L7, _LABELS, facets=_CLIENT_FACETS)),
    # a quantile, not a count: a sidecar client's calls through a waypoint weigh in twice
    duration=Source("istio_request_duration_milliseconds_bucket", _UPSTREAM_CALLER, _LABELS, scale=0.001),
)
ISTIO_HTTP = Http(
    client_errors=_4XX,
    inbound_duration=Source("istio_request_duration_milliseconds_bucket", _SERVER, _LABELS, scale=0.001),
    grpc=Source("istio_requests_total", _SERVER + ('request_protocol="grpc"',),
                dict(_LABELS, grpc_status="grpc_response_status")),
    request_bytes=Source("istio_request_bytes_bucket", _SERVER, _LABELS),
    response_bytes=Source("istio_response_bytes_bucket", _SERVER, _LABELS),
    unavailable={"routes": "Istio's standard metrics carry no route label (a Telemetry tag override can add one)"},
)
ISTIO_PROXY_HEALTH = ProxyHealth(
    live=Source("envoy_server_live", (), _PROXY),
    # sidecars and waypoints (Envoy's heap), and ztunnels (the kubelet's working set of their
    # container: ztunnel has no memory series of its own)
    memory=(Source("envoy_server_memory_allocated", (), _PROXY),
            replace(ambient.ZTUNNEL_MEMORY, labels=dict(_PROXY, workload=ambient.ZTUNNEL_WORKLOAD))),
    # cAdvisor: the sidecars' and the ztunnels' containers are both `istio-proxy`
    cpu=Source("container_cpu_usage_seconds_total", ('container="istio-proxy"',), _PROXY),
    connections=Source("envoy_server_total_connections", (), _PROXY),
    # the callers' response flags say what Istio's default stats inclusion drops per cluster
    no_healthy_upstream=Source(_TCP_AND_HTTP_CALLS, _UPSTREAM_CALLER + (_FLAGS.format(flags="UH"),), _LABELS),
    upstream_connect_failures=Source(_TCP_AND_HTTP_CALLS, _UPSTREAM_CALLER + (_FLAGS.format(flags=_CONNECT_FLAGS),), _LABELS),
    circuit_breaker_overflow=Source(_TCP_AND_HTTP_CALLS, _UPSTREAM_CALLER + (_FLAGS.format(flags="UO"),), _LABELS),
    # kept by the proxyStatsMatcher inclusion meshobs renders (collectors/istio)
    outlier_ejections=Source("envoy_cluster_outlier_detection_ejections_active", ('cluster_name=~"outbound[|].*"',),
                             _CALLER_OF_CLUSTER),
    unavailable=dict.fromkeys(("endpoints", "healthy_endpoints"),
                              "Istio's default stats inclusion drops the per-cluster membership gauges (one per "
                              "service in every sidecar); no-healthy-upstream comes from the callers' response flag UH"),
)
ISTIO_CONTROL_PLANE_DETAIL = ControlPlaneDetail(
    versions=Source("istio_build", ('component="pilot"',), {"version": "tag"}),
    instances=Source("istio_build", ('component="pilot"',)),
    memory=Source("process_resident_memory_bytes", _ISTIOD),
    cpu=Source("process_cpu_seconds_total", _ISTIOD),
    goroutines=Source("go_goroutines", _ISTIOD),
    pushes_by_type=Source("pilot_xds_pushes", ('type!~".*senderr"',), {"type": "type"}),
    push_errors=Source(("pilot_total_xds_internal_errors", "pilot_xds_push_context_errors")),
    push_time=Source("pilot_xds_push_time_bucket", (), {"type": "type"}),
    webhook_injections=Source(("sidecar_injection_success_total", "sidecar_injection_failure_total"), (),
                              {"outcome": "metric_name"}),
    webhook_validations=Source(("galley_validation_passed", "galley_validation_failed"), (), {"outcome": "metric_name"}),
    required=(Source("istio_build", ('component="pilot"',)),),
    unavailable={
        "grpc_requests": "istiod's xDS is charted as pushes, not as gRPC calls",
        "raft_commit_time": "istiod keeps no consensus log", "leader_last_contact": "istiod keeps no consensus log",
        "autopilot_healthy": "istiod has no autopilot", "leader_elections": "istiod keeps no consensus log",
        "raft_applies": "istiod keeps no consensus log",
        "connected_dataplanes": "the connected proxies panel (`pilot_xds`) is this number",
    },
)

# Calls between clusters: the destination reporter names both ends in Istio's cluster names
# (`values.global.multiCluster.clusterName`, "Kubernetes" unless set), local calls as pairs of one cluster.
_PAIR_LABELS = dict(_LABELS, destination_cluster="destination_cluster")
ISTIO_CROSS_CLUSTER = CrossCluster(
    requests=Source("istio_requests_total", _DESTINATION, _PAIR_LABELS,
                    facets={"error": _ERRORS, "mtls": _MTLS}),
    duration=Source("istio_request_duration_milliseconds_bucket", _DESTINATION, _PAIR_LABELS, scale=0.001),
    reporter="destination",
    only_remote=False,
    about="Istio: the destination's proxy labels both ends (`source_cluster`, `destination_cluster`)",
)

ISTIO = Dialect(
    name="istio",
    title="Istio",
    proxy=ProxyMetrics("istio", "/stats/prometheus", ENVOY_TLS + ENVOY_RBAC + _ISTIO, (_ISTIO_CERTS,),
                       # Istio's stats carry their tags in the internal name: match the family anywhere
                       stats_filter=admin_stats_filter("istio_requests_total", f"^{NO_FILTER_CHAIN_STAT}$")),
    # 15000 (admin) is localhost-only in Istio; 15090 serves the Envoy stats.
    discovery=PodDiscovery(15090, "/stats/prometheus", annotations=("sidecar.istio.io/status",)),
    # pilot-agent's merged app + Envoy metrics, what Istio's own prometheus.io/port annotation names
    other_metrics_ports=(15020,),
    requests=Source(
        "istio_requests_total",
        _SERVER,
        _LABELS,
        facets={
            "error": _ERRORS,
            "403": _403,
            "plaintext": _NO_TLS,
        },
    ),
    service_requests=(
        Source("istio_requests_total", _SERVER, _SERVICE_LABELS, facets={"error": _ERRORS}),
        Source("istio_requests_total", _SOURCE, _SERVICE_LABELS, facets={"error": _ERRORS}),
    ),
    edges=Source(
        "istio_requests_total",
        _SERVER,
        _LABELS,
        facets={"error": _ERRORS, "403": _403, "mtls": _MTLS, "plaintext": _NO_TLS},
    ),
    request_duration=Source("istio_request_duration_milliseconds_bucket", _SERVER, _SERVICE_LABELS, scale=0.001),
    inbound_duration=Source("istio_request_duration_milliseconds_bucket", _SERVER, _LABELS, scale=0.001),
    # Without the exporter: Envoy's RBAC filter stats (kept by Istio's default stats filter); where
    # a workload has none, 403s answered at the destination (an application's 403 looks the same:
    # Istio's RBAC denials carry no response flag that sets them apart).
    # A waypoint's RBAC stats carry no workload (its connection managers are named by port): its L7
    # denials count at the waypoint itself (the pod's owner), not at the workloads behind it. ztunnel's L4 denials count at the destination
    # workload (the only record of them). The 403 stand-in reads sidecar servers only: behind a
    # waypoint its RBAC already counts them.
    authz_denied=(
        Source(_RBAC, ('authz_enforce_result="denied"',), _POD_WORKLOAD),
        Source(ambient.CLOSED, ambient.L4_DESTINATION + (ambient.flags_matcher(ambient.DENY),), _LABELS),
        Source("istio_requests_total", _DESTINATION + _403, _LABELS),
    ),
    authz_allowed=(Source(_RBAC, ('authz_enforce_result="allowed"',), _POD_WORKLOAD),),
    # ambient plaintext: connections a ztunnel accepted without HBONE (it never writes `none`)
    plaintext=(Source(ambient.OPENED, ambient.L4_DESTINATION + (ambient.PLAINTEXT,), _LABELS),),
    inbound_connections=(Source(ambient.OPENED, ambient.L4_DESTINATION, _LABELS),),
    # TCP services of sidecars; every connection to an ambient pod (its ztunnel's destination side)
    tcp_connections=(Source("istio_tcp_connections_opened_total", _DESTINATION, _LABELS),),
    # Born on the first rejection: read as a lazy counter (signals.CONFIG_REJECTIONS).
    config_rejected=(Source("pilot_total_xds_rejects"),),
    control_plane=ControlPlane(
        up=Source("istio_build", ('component="pilot"',)),
        connected_proxies=Source("pilot_xds"),
        # `type` also counts failed sends (`cds_senderr`, ...): they are not pushes
        config_pushes=Source("pilot_xds_pushes", ('type!~".*_senderr"',)),
        push_duration=Source("pilot_proxy_convergence_time_bucket"),
        ca_expiry=Source("citadel_server_root_cert_expiry_timestamp", constant_labels={"cert": "root"}),
        cert_issuance_errors=Source("citadel_server_csr_sign_err_count"),
    ),
    leaf_lifetime="24h",
    extra_catalogue=(
        *ambient.ZTUNNEL_METRICS,
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
        "envoy_listener_ssl_fail_verify_error",
        *ztunnel.CATALOGUE,  # the ambient dashboards' series (meshobs/render/ambient_dashboards.py)
    ),
    tcp=ISTIO_TCP,
    client=ISTIO_CLIENT,
    http=ISTIO_HTTP,
    proxy_health=ISTIO_PROXY_HEALTH,
    control_plane_detail=ISTIO_CONTROL_PLANE_DETAIL,
    cross_cluster=ISTIO_CROSS_CLUSTER,
    ztunnels=ambient.ZTUNNELS,
)
