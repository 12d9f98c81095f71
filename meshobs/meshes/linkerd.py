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
    edges=Source(
        "response_total",
        _OUTBOUND + ('dst_service!=""',),
        {
            "source_namespace": "namespace",
            "source_workload": _WORKLOAD,
            "destination_namespace": "dst_namespace",
            "destination_workload": FirstOf(tuple(f"dst_{owner.removeprefix('k8s_')}" for owner in _OWNER)),
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
)
