"""What the ambient dashboards read beyond the signal model: a ztunnel's connections per node by
workload, response flag and security, its workload-manager, DNS and process series, and a
waypoint's requests, RBAC decisions and Envoy health per waypoint.

Which series are a ztunnel's or a waypoint's, the flags and the per-ztunnel sources are
meshobs/meshes/ambient.py's (one place); this module only adds the labels and facets the
dashboards break them down by. Names, labels and values as ztunnel and Istio 1.30.3 write them
(docs/ambient.md).
"""

from __future__ import annotations

from dataclasses import replace

from meshobs.meshes import ambient as a
from meshobs.meshes.extended import POD_OWNER
from meshobs.promql import Cut, Source

NODE = a.NODE_LABEL
WAYPOINT = a.WAYPOINT_LABEL

# The labels of ztunnel's connection series (src/proxy/metrics.rs) as meshobs names them.
_L4 = {
    "reporter": "reporter",
    "destination_namespace": "destination_workload_namespace",
    "destination_workload": "destination_workload",
    "destination_service": "destination_service_name",
    "source_namespace": "source_workload_namespace",
    "source_workload": "source_workload",
    "source_principal": "source_principal",
    "response_flags": "response_flags",
}
_FLAGS = {
    # every flag but `-` is a failed connection; closed_total has it in every version
    "failed": (a.FAILED,),
    "denied": (a.flags_matcher(a.DENY),),
    "identity": (a.flags_matcher(a.IDENTITY_FLAGS),),
    "mtls": (a.MTLS,),
    "plaintext": (a.PLAINTEXT,),
}


def _l4(metric: str) -> Source:
    return replace(a.ztunnel_source(metric, **_L4), facets=_FLAGS)


OPENED = _l4(a.OPENED)
CLOSED = _l4(a.CLOSED)
RECEIVED_BYTES = _l4("istio_tcp_received_bytes_total")
SENT_BYTES = _l4("istio_tcp_sent_bytes_total")
_XDS_TYPE = Cut("url", ("type.googleapis.com/(?:.*[.])?([^.]+)",), ".*[.](?:{value})")
XDS_MESSAGES = a.ztunnel_source("istio_xds_message_total", type=_XDS_TYPE)
XDS_BYTES = a.ztunnel_source("istio_xds_message_bytes_total", type=_XDS_TYPE)
PROXIES_STARTED = a.ztunnel_source("workload_manager_proxies_started_total")
PROXIES_STOPPED = a.ztunnel_source("workload_manager_proxies_stopped_total")
DNS_REQUESTS = a.ztunnel_source("istio_dns_requests_total")
# ztunnel's only process series (src/metrics/process.rs, 1.28 and later); CPU and memory are the
# kubelet's (ambient.ZTUNNEL_CPU / ZTUNNEL_MEMORY)
OPEN_FDS = a.ztunnel_source("process_open_fds")
MAX_FDS = a.ztunnel_source("process_max_fds")
# istiod signing the certificates ztunnel requests for its node's workloads (ztunnel has no expiry metric)
ISTIOD_CSRS = Source("citadel_server_csr_count")

# --- waypoints: Envoy with Istio's stats filter as reporter SERVER_GATEWAY --------------------
_L7 = {
    WAYPOINT: WAYPOINT,
    "destination_namespace": "destination_service_namespace",
    "destination_service": "destination_service_name",
    "source_namespace": "source_workload_namespace",
    "source_workload": "source_workload",
    "code": "response_code",
}
_L7_FACETS = {
    "error": a.L7_ERRORS,
    "403": ('response_code="403"',),
}
_L7_MATCHERS = a.WAYPOINT_L7 + a.WAYPOINT
WAYPOINT_REQUESTS = Source("istio_requests_total", _L7_MATCHERS, _L7, facets=_L7_FACETS)
WAYPOINT_DURATION = Source("istio_request_duration_milliseconds_bucket", _L7_MATCHERS, _L7, scale=0.001)
_PER_WAYPOINT = {WAYPOINT: WAYPOINT, "namespace": "namespace", "pod": "pod", "workload": POD_OWNER}


def _waypoint(metric: str, *matchers: str, **labels: str | Cut) -> Source:
    return Source(metric, a.WAYPOINT + matchers, {**_PER_WAYPOINT, **labels})


# A waypoint's HTTP connection managers are named by the port only, `inbound_0.0.0.0_<service port>`
# (listener_waypoint.go: cc.StatPrefix() with bind 0.0.0.0), so its RBAC stats tell the port, never
# the service: denials per service are the waypoint's 403s (`reporter="waypoint"`).
WAYPOINT_RBAC_DENIED = _waypoint("envoy_http_rbac", 'authz_enforce_result="denied"', port=Cut(
    "http_conn_manager_prefix", ("inbound_.*_([0-9]+)",), "inbound_.*_(?:{value})"))
WAYPOINT_UP = _waypoint("up")
WAYPOINT_LIVE = _waypoint("envoy_server_live")
WAYPOINT_MEMORY = _waypoint("envoy_server_memory_allocated")
WAYPOINT_CONNECTIONS = _waypoint("envoy_server_total_connections")
WAYPOINT_VERSIONS = _waypoint("istio_build", 'component="proxy"', version="tag")

_ALL = (OPENED, CLOSED, RECEIVED_BYTES, SENT_BYTES, a.ZTUNNEL_SOCKETS_OPEN, a.ZTUNNEL_UP, a.ZTUNNEL_VERSION,
        a.ZTUNNEL_XDS_TERMINATIONS, XDS_MESSAGES, XDS_BYTES, a.ZTUNNEL_PROXIES, a.ZTUNNEL_PENDING_PROXIES, PROXIES_STARTED,
        PROXIES_STOPPED, DNS_REQUESTS, a.ZTUNNEL_CPU, a.ZTUNNEL_MEMORY, OPEN_FDS, MAX_FDS, ISTIOD_CSRS, WAYPOINT_REQUESTS,
        WAYPOINT_DURATION, WAYPOINT_RBAC_DENIED, WAYPOINT_UP, WAYPOINT_LIVE, WAYPOINT_MEMORY, WAYPOINT_CONNECTIONS,
        WAYPOINT_VERSIONS)
# Metric names the ambient dashboards read (Istio's catalogue for `meshobs check`).
CATALOGUE = tuple(sorted({name for source in _ALL for name in source.metric_names()}))
