"""Linkerd (linkerd2-proxy on admin port 4191, control plane in namespace linkerd).

Workload numbers come from `direction="inbound"` series, which name the receiving workload by
the label of whatever owns the pod (`deployment`, `statefulset`, `daemonset`, ...). Service
numbers come from the callers' `direction="outbound"` series, which name the service
(`dst_service`), as `linkerd viz stat svc` does: they also count the calls no destination pod
answered. The `authority` is never cut into a service name (it may be a pod IP). `classification`
is the proxy's verdict (HTTP 5xx, a gRPC status other than OK, a failed stream). mTLS is
`tls="true"`; kubelet probes reach the inbound proxy in plaintext by design and are not plaintext
findings. Linkerd has no handshake-failure counter, so TLS failures come from the meshobs
exporter only."""

from meshobs.meshes.base import ControlPlane, Dialect
from meshobs.meshes.crosscluster import CrossCluster
from meshobs.meshes.extended import Client, ControlPlaneDetail, Http, ProxyHealth, Tcp
from meshobs.meshes.proxy import (
    ALLOWED, DENIED, DRY_RUN_DENIED, HANDSHAKES, PLAINTEXT, CertFamily, PodDiscovery, ProxyMetrics, Rule, all_of, label_is,
    label_not, matching,
)
from meshobs.promql import FirstOf, Source

# What every linkerd2-proxy dials (identity, destination, policy), in the control plane's namespace.
CONTROL_PLANE_NAMESPACE = "linkerd"
PROXY_CONTROL_PORTS = (8080, 8086, 8090)
# The injector labels every meshed pod with this key; the kubelet probes the proxy's own
# /live and /ready on the admin port.
MESHED_POD_LABEL = "linkerd.io/control-plane-ns"
PROXY_PROBE_PATHS = ("/live", "/ready")

_INBOUND = ('direction="inbound"',)
_OUTBOUND = ('direction="outbound"',)
# The pod's owner, by kind (Linkerd's Prometheus names a Job's label `k8s_job`: `job` is the scrape job's).
_OWNER = ("deployment", "statefulset", "daemonset", "k8s_job", "replicaset")
_WORKLOAD = FirstOf(_OWNER)
# the callee's owner on outbound series (`dst_deployment`, `dst_statefulset`, ...)
_DST_WORKLOAD = FirstOf(tuple(f"dst_{owner.removeprefix('k8s_')}" for owner in _OWNER))
_WORKLOAD_LABELS = {"destination_namespace": "namespace", "destination_workload": _WORKLOAD}
_INBOUND_LABELS = dict(_WORKLOAD_LABELS, code="status_code")
_SERVICE_LABELS = {"destination_namespace": "dst_namespace", "destination_service": "dst_service", "code": "status_code"}
_FAILURE = ('classification="failure"',)
# Kubelet probes: plaintext from the node to the pod's IP, authorized by the policy controller's
# default probe route; not an unmeshed client.
_NOT_PROBE = ('route_name!="probe"', 'authority!~"[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+(:[0-9]+)?"')

_INBOUND_SAMPLE = label_is("direction", "inbound")
# linkerd2-proxy has no handshake-failure counter; meshed inbound connections are `tls="true"`,
# anything else reaching the proxy from outside the pod is plaintext.
_PROXY_RULES = (
    Rule("inbound_http_authz_allow_total", (ALLOWED, "")),
    Rule("inbound_tcp_authz_allow_total", (ALLOWED, "")),
    Rule("inbound_http_authz_deny_total", (DENIED, "")),
    Rule("inbound_tcp_authz_deny_total", (DENIED, "")),
    # audit mode (default policy `audit`): the policy controller admits what would be denied under
    # an authorization named "audit" (linkerd2-proxy#3068): allowed, and a would-be denial
    Rule("inbound_http_authz_allow_total", (DRY_RUN_DENIED, ""), label_is("authz_name", "audit")),
    Rule("inbound_tcp_authz_allow_total", (DRY_RUN_DENIED, ""), label_is("authz_name", "audit")),
    Rule("tcp_open_total", (HANDSHAKES, ""), all_of(_INBOUND_SAMPLE, label_is("tls", "true"))),
    Rule("request_total", (PLAINTEXT, ""),
         all_of(_INBOUND_SAMPLE, label_not("tls", "true"), label_not("no_tls_reason", "loopback"),
                matching(*_NOT_PROBE))),
)

# --- TCP, the caller's side, sizes, gRPC, proxies, control plane (meshobs/meshes/extended.py) ---
# linkerd2-proxy's tcp_* series count every connection through the proxy (HTTP ones too);
# `write` is towards the peer of that direction, `read` from it.
_OUTBOUND_LABELS = {
    "source_namespace": "namespace",
    "source_workload": _WORKLOAD_LABELS["destination_workload"],
    "destination_namespace": "dst_namespace",
    "destination_workload": _DST_WORKLOAD,
    "destination_service": "dst_service",
    "code": "status_code",
}
# the control-plane scrape job labels its containers with `component`; proxies have none
_PROXY_PROCESS = ('component=""',)
_PROXY = {"namespace": "namespace", "workload": _WORKLOAD_LABELS["destination_workload"]}
_CONTROLLERS = (f'namespace="{CONTROL_PLANE_NAMESPACE}"', 'component!=""')
_NO_BREAKER = ("linkerd2-proxy has no overflow breaker or outlier ejection; its failure accrual takes endpoints out "
               "of the balancer, which shows as fewer ready endpoints")
_NO_PUSHES = "Linkerd's controllers stream lookups to proxies instead of pushing typed configuration; see the gRPC panels"
_NO_RAFT = "Linkerd's control plane keeps no consensus log: its state is in the Kubernetes API"

LINKERD_TCP = Tcp(
    opened=Source("tcp_open_total", _INBOUND, _WORKLOAD_LABELS, facets={"mtls": ('tls="true"',)}),
    closed=Source("tcp_close_total", _INBOUND, _WORKLOAD_LABELS),
    active=Source("tcp_open_connections", _INBOUND, _WORKLOAD_LABELS),
    sent_bytes=Source("tcp_write_bytes_total", _INBOUND, _WORKLOAD_LABELS),
    received_bytes=Source("tcp_read_bytes_total", _INBOUND, _WORKLOAD_LABELS),
    client_sent_bytes=Source("tcp_write_bytes_total", _OUTBOUND, _OUTBOUND_LABELS),
    client_received_bytes=Source("tcp_read_bytes_total", _OUTBOUND, _OUTBOUND_LABELS),
    # what Linkerd's own dashboards chart as "TCP connection failures"
    connect_failures=Source("tcp_close_total", _OUTBOUND + ('errno!=""',), _OUTBOUND_LABELS),
)
LINKERD_CLIENT = Client(
    requests=Source("response_total", _OUTBOUND, _OUTBOUND_LABELS,
                    facets={"5xx": ('status_code=~"5.."',), "4xx": ('status_code=~"4.."',)}),
    duration=Source("response_latency_ms_bucket", _OUTBOUND, _OUTBOUND_LABELS, scale=0.001),
)
LINKERD_HTTP = Http(
    client_errors=('status_code=~"4.."',),
    inbound_duration=Source("response_latency_ms_bucket", _INBOUND, _INBOUND_LABELS, scale=0.001),
    # by service, as Linkerd's service numbers are read: from the callers (`dst_service`)
    grpc=Source("response_total", _OUTBOUND + ('dst_service!=""', 'grpc_status!=""'),
                dict(_SERVICE_LABELS, grpc_status="grpc_status")),
    # per-route numbers of a ServiceProfile's routes (what Linkerd's route dashboard charts)
    routes=Source("route_response_total", _INBOUND, dict(_WORKLOAD_LABELS, route="rt_route", code="status_code"),
                  facets={"5xx": ('classification="failure"',)}),
    unavailable=dict.fromkeys(("request_bytes", "response_bytes"),
                              "linkerd2-proxy measures no per-request sizes; the TCP byte counters are charted instead"),
)
LINKERD_PROXY_HEALTH = ProxyHealth(
    memory=Source("process_resident_memory_bytes", _PROXY_PROCESS, _PROXY),
    cpu=Source("process_cpu_seconds_total", _PROXY_PROCESS, _PROXY),
    connections=Source("tcp_open_connections", _INBOUND, _PROXY),
    endpoints=Source("outbound_http_balancer_endpoints", (), {
        "source_namespace": "namespace", "source_workload": _WORKLOAD_LABELS["destination_workload"],
        "destination_service": "backend_name"}),
    healthy_endpoints=Source("outbound_http_balancer_endpoints", ('endpoint_state="ready"',), {
        "source_namespace": "namespace", "source_workload": _WORKLOAD_LABELS["destination_workload"],
        "destination_service": "backend_name"}),
    upstream_connect_failures=Source("tcp_close_total", _OUTBOUND + ('errno!=""',), _OUTBOUND_LABELS),
    unavailable={
        "live": "linkerd2-proxy exports no liveness gauge: the kubelet probes its /live and restarts it, and a proxy "
                "nobody can read raises MeshExporterTargetDown",
        "no_healthy_upstream": "linkerd2-proxy counts no calls failed for want of an endpoint; a balancer with no "
                               "ready endpoint shows in the upstream endpoints panel",
        "circuit_breaker_overflow": _NO_BREAKER, "outlier_ejections": _NO_BREAKER,
    },
)
LINKERD_CONTROL_PLANE_DETAIL = ControlPlaneDetail(
    instances=Source("process_start_time_seconds", _CONTROLLERS, {"component": "component"}),
    memory=Source("process_resident_memory_bytes", _CONTROLLERS, {"component": "component"}),
    cpu=Source("process_cpu_seconds_total", _CONTROLLERS, {"component": "component"}),
    goroutines=Source("go_goroutines", _CONTROLLERS, {"component": "component"}),
    grpc_requests=Source("grpc_server_handled_total", (f'namespace="{CONTROL_PLANE_NAMESPACE}"',),
                         {"component": "component", "grpc_code": "grpc_code"}),
    webhook_injections=Source("proxy_inject_admission_responses_total", (), {"outcome": "skip"}),
    # every proxy needs identity (certificates) and destination (discovery, policy)
    required=tuple(Source("process_start_time_seconds", (f'namespace="{CONTROL_PLANE_NAMESPACE}"', f'component="{c}"'))
                   for c in ("identity", "destination")),
    unavailable={
        "versions": "Linkerd's controllers export no build information; `linkerd version` tells",
        "pushes_by_type": _NO_PUSHES, "push_errors": _NO_PUSHES, "push_time": _NO_PUSHES,
        "webhook_validations": "Linkerd's policy validator exports no admission counters",
        "raft_commit_time": _NO_RAFT, "leader_last_contact": _NO_RAFT, "autopilot_healthy": _NO_RAFT,
        "leader_elections": _NO_RAFT, "raft_applies": _NO_RAFT,
        "connected_dataplanes": "the destination controller does not count its proxies' streams",
    },
)

# --- calls between clusters (meshobs/meshes/crosscluster.py) ---
# Gateway mode: the service mirror labels a mirrored service's endpoints with the Link's target
# cluster and the remote service's name; the destination controller hands those to the caller's
# proxy as `target_cluster`, `target_service`, `target_service_namespace`, which it puts on its
# outbound series as `dst_target_*` (linkerd2 controller/api/destination/watcher/port_publisher.go).
# Local calls have no `dst_target_cluster`. The flat-network "remote discovery" mode resolves the
# remote cluster's endpoints directly and puts no cluster on the series: those calls look local.
_TO_OTHER_CLUSTER = _OUTBOUND + ('dst_target_cluster!=""',)
_CROSS_CLUSTER_LABELS = {
    "destination_cluster": "dst_target_cluster",
    "destination_namespace": "dst_target_service_namespace",
    "destination_service": "dst_target_service",
    "source_namespace": "namespace",
    "source_workload": _WORKLOAD,
    "code": "status_code",
}
LINKERD_CROSS_CLUSTER = CrossCluster(
    requests=Source("response_total", _TO_OTHER_CLUSTER, _CROSS_CLUSTER_LABELS,
                    facets={"error": _FAILURE, "mtls": ('tls="true"',)}),
    duration=Source("response_latency_ms_bucket", _TO_OTHER_CLUSTER, _CROSS_CLUSTER_LABELS, scale=0.001),
    reporter="caller",
    only_remote=True,
    about="Linkerd: the caller's proxy counts calls through a multicluster gateway (`dst_target_cluster`); "
          "the caller's cluster is the store's cluster label; flat-network (remote discovery) calls are not told apart",
    # the service mirror probes each linked cluster's gateway (linkerd2 multicluster/service-mirror/metrics.go)
    remote_up=Source("gateway_alive", (), {"destination_cluster": "target_cluster_name"}),
    gateway_probe_duration=Source("gateway_probe_latency_ms_bucket", (), {"destination_cluster": "target_cluster_name"},
                                  scale=0.001),
)

LINKERD = Dialect(
    name="linkerd",
    title="Linkerd",
    # the proxy exposes its leaf's expiry (and identity_cert_refresh_count), never its notBefore
    proxy=ProxyMetrics("linkerd", "/metrics", _PROXY_RULES, (CertFamily("identity_cert_expiration_timestamp_seconds"),)),
    discovery=PodDiscovery(4191, "/metrics", annotations=("linkerd.io/proxy-version",), container="linkerd-proxy"),
    requests=Source(
        "response_total",
        _INBOUND,
        _INBOUND_LABELS,
        facets={
            "error": _FAILURE,
            "403": ('status_code="403"',),
            "plaintext": ('tls!="true"', 'no_tls_reason!="loopback"') + _NOT_PROBE,
        },
    ),
    service_requests=(Source("response_total", _OUTBOUND + ('dst_service!=""',), _SERVICE_LABELS, facets={"error": _FAILURE}),),
    # workload to workload in this cluster: a call through a multicluster gateway names no
    # destination pod (its endpoint is the remote gateway) and is one of the cross-cluster calls
    edges=Source(
        "response_total",
        _OUTBOUND + ('dst_service!=""', 'dst_target_cluster=""'),
        {
            "source_namespace": "namespace",
            "source_workload": _WORKLOAD,
            "destination_namespace": "dst_namespace",
            "destination_workload": _DST_WORKLOAD,
            "destination_service": "dst_service",
            "code": "status_code",
        },
        # a caller's proxy labels a connection it secured with mTLS `tls="true"`
        facets={"error": _FAILURE, "403": ('status_code="403"',), "mtls": ('tls="true"',)},
    ),
    request_duration=Source("response_latency_ms_bucket", _OUTBOUND + ('dst_service!=""',), _SERVICE_LABELS, scale=0.001),
    inbound_duration=Source("response_latency_ms_bucket", _INBOUND, _INBOUND_LABELS, scale=0.001),
    authz_denied=(Source(("inbound_http_authz_deny_total", "inbound_tcp_authz_deny_total"), (), _WORKLOAD_LABELS),),
    authz_allowed=(Source(("inbound_http_authz_allow_total", "inbound_tcp_authz_allow_total"), (), _WORKLOAD_LABELS),),
    cert_expiry=(
        Source("identity_cert_expiration_timestamp_seconds", (), _WORKLOAD_LABELS, constant_labels={"cert": "leaf"}),
    ),
    tcp_connections=(Source("tcp_open_total", _INBOUND, _WORKLOAD_LABELS),),
    # Linkerd pushes no configuration that a proxy can reject; the nearest signal is the
    # destination controller failing the lookups proxies make for their routing config.
    config_rejected=(
        Source(
            "grpc_server_handled_total",
            ('grpc_service="io.linkerd.proxy.destination.Destination"', 'grpc_code=~"Internal|Unknown|Unavailable|InvalidArgument"'),
        ),
    ),
    control_plane=ControlPlane(
        # a start timestamp per instance: counted (signals.CONTROL_PLANE_UP), never summed
        up=Source("process_start_time_seconds", ('namespace="linkerd"',)),
        config_pushes=Source("grpc_server_handled_total", ('grpc_service="io.linkerd.proxy.destination.Destination"',)),
        cert_issuance_errors=Source(
            "grpc_server_handled_total", ('grpc_service="io.linkerd.proxy.identity.Identity"', 'grpc_code!="OK"')
        ),
    ),
    leaf_lifetime="24h",
    extra_catalogue=(
        "request_total",
        "response_latency_ms_sum",
        "response_latency_ms_count",
        "route_request_total",
        "route_response_total",
        "route_response_latency_ms_bucket",
        "tcp_open_total",
        "tcp_close_total",
        "tcp_open_connections",
        "tcp_read_bytes_total",
        "tcp_write_bytes_total",
        "inbound_http_route_not_found_total",
        "identity_cert_refresh_count",
    ),
    tcp=LINKERD_TCP,
    client=LINKERD_CLIENT,
    http=LINKERD_HTTP,
    proxy_health=LINKERD_PROXY_HEALTH,
    control_plane_detail=LINKERD_CONTROL_PLANE_DETAIL,
    cross_cluster=LINKERD_CROSS_CLUSTER,
)
