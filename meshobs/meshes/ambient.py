"""Istio's ambient data planes as meshobs reads them: ztunnel (one per node, L4 and mTLS) and
waypoints (Envoy, L7, `reporter="waypoint"`). Facts from ztunnel and Istio 1.30.3 (and master
62d82653 / 86c9f01f), written up with their source files in docs/ambient.md.

Which series are ztunnel's is told by the *scrape target*, never by what a pod answers: ztunnel
runs only in Istio's root namespace as pods `ztunnel-<suffix>` (the chart's DaemonSet), and the
`namespace` and `pod` labels are target labels that the scraped pod cannot set (Prometheus renames
a scraped `namespace` to `exported_namespace`). This holds for meshobs's `istio-ztunnels` job, its
PodMonitor and Istio's own annotation-based scraping alike; `node` is added by meshobs's job and
PodMonitor only, so per-node views fall back to the ztunnel pod where it is missing.

A waypoint's L7 series carry `reporter="waypoint"` (the stats filter's SERVER_GATEWAY reporter);
its other Envoy stats are told apart by the `waypoint` target label of meshobs's waypoint job.

Counting (docs/ambient.md, "Counting without counting twice"): L7 from `reporter="destination"`
(sidecar servers) plus `reporter="waypoint"` (ambient servers behind a waypoint); L4 from ztunnel's
`reporter="destination"` series, the server's side (a connection is reported by both ztunnels).
"""

from __future__ import annotations

from dataclasses import dataclass

from meshobs.meshes import ztunnel_proxy as pods
from meshobs.promql import AnyOf, Cut, Source

# The pods' facts (namespace, labels, ports) are the exporter's discovery's: meshobs/meshes/ztunnel_proxy.py.
ROOT_NAMESPACE = pods.SYSTEM_NAMESPACE  # where istiod and ztunnel run

# --- ztunnel -----------------------------------------------------------------------------------
ZTUNNEL_POD_PREFIX = "ztunnel-"  # the Helm chart's DaemonSet `ztunnel`
# Selects the series scraped from a ztunnel pod (target labels: unforgeable by any pod).
ZTUNNEL = (f'namespace="{ROOT_NAMESPACE}"', f'pod=~"{ZTUNNEL_POD_PREFIX}.+"')
# A ztunnel pod as a proxy workload (`namespace`, `workload`): the DaemonSet, whatever its pod's suffix.
ZTUNNEL_WORKLOAD = Cut("pod", (f"({ZTUNNEL_POD_PREFIX.rstrip('-')})-.+",), "(?:{value})-.+")
# The label meshobs's ztunnel job adds: the node whose pods a ztunnel carries.
NODE_LABEL = "node"
ZTUNNEL_METRICS_PORT = pods.ZTUNNEL_PORT[1]  # ztunnel has no 15090 and its admin port is localhost-only

# The server's side of a connection (both ztunnels report every connection).
L4_DESTINATION = ZTUNNEL + (pods.DESTINATION,)
# ztunnel's connection_security_policy is `mutual_tls` (HBONE) or `unknown`, never `none`: at a
# destination, `unknown` is plaintext from outside the mesh (PERMISSIVE inbound passthrough).
MTLS = pods.MTLS_POLICY
PLAINTEXT = pods.PLAINTEXT_POLICY
# response_flags (src/proxy/metrics.rs ResponseFlags): `-` is success.
FAILED = 'response_flags!="-"'  # any flag but success
DENY = pods.DENY  # an AuthorizationPolicy refused the connection: the only record of an L4 denial
# a TLS handshake on HBONE failed (TLS_FAILURE, 1.29+), the ztunnel could not get a workload's
# certificate (IDENTITY_ERROR, 1.29+), or the peer's certificate is revoked (CERT_REVOKED, master):
# the flags the exporter reads as TLS failures
IDENTITY_FLAGS = tuple(pods.TLS_FLAGS)
# connection failures other than denials and identity (CONNECT: any other; NETWORK_POLICY: HBONE
# 15008 timed out; H2_HANDSHAKE_FAILURE, master)
CONNECT_FLAGS = ("CONNECT", "NETWORK_POLICY", "H2_HANDSHAKE_FAILURE")
# Counted on close with the outcome's flag in every version (`_failed_total` exists from 1.29 only).
CLOSED = pods.CLOSED
OPENED = pods.OPENED
# xDS streams to istiod that ended in failure: ConnectionError (istiod unreachable) and Error (a
# gRPC error); Reconnect and Complete are the normal stream recycling (src/xds/client.rs run_loop).
XDS_FAILURE_REASONS = ("ConnectionError", "Error")


def flags_matcher(flags: tuple[str, ...] | str) -> str:
    """response_flags equal to one of `flags` (ztunnel writes exactly one flag)."""
    return f'response_flags=~"{flags if isinstance(flags, str) else "|".join(flags)}"'


# Per ztunnel: normalized `node` and `pod` (the ztunnel pod) are the scrape target's labels.
_PER_ZTUNNEL = {NODE_LABEL: NODE_LABEL, "pod": "pod"}


def ztunnel_source(metric: str | tuple[str, ...], *matchers: str, **labels: str) -> Source:
    """A series of the ztunnel pods, per node and ztunnel pod, plus `labels` (normalized: native)."""
    return Source(metric, ZTUNNEL + matchers, {**_PER_ZTUNNEL, **labels})


# Prometheus's own scrape health of each ztunnel: 0 or gone, and that node's ambient pods are cut off.
ZTUNNEL_UP = ztunnel_source("up")
ZTUNNEL_VERSION = ztunnel_source("istio_build", 'component="ztunnel"', version="tag")
ZTUNNEL_XDS_FAILURES = ztunnel_source("istio_xds_connection_terminations_total",
                                      f'reason=~"{"|".join(XDS_FAILURE_REASONS)}"', reason="reason")
ZTUNNEL_XDS_TERMINATIONS = ztunnel_source("istio_xds_connection_terminations_total", reason="reason")
ZTUNNEL_XDS_MESSAGES = ztunnel_source("istio_xds_message_total", url="url")
ZTUNNEL_IDENTITY_FAILURES = ztunnel_source(CLOSED, flags_matcher(IDENTITY_FLAGS), response_flags="response_flags")
ZTUNNEL_CONNECTIONS_OPENED = ztunnel_source(OPENED, reporter="reporter")
ZTUNNEL_CONNECTIONS_FAILED = ztunnel_source(CLOSED, FAILED, reporter="reporter",
                                            response_flags="response_flags")
ZTUNNEL_SENT_BYTES = ztunnel_source("istio_tcp_sent_bytes_total", reporter="reporter")
ZTUNNEL_RECEIVED_BYTES = ztunnel_source("istio_tcp_received_bytes_total", reporter="reporter")
ZTUNNEL_SOCKETS_OPEN = ztunnel_source("istio_tcp_sockets_open", reporter="reporter")  # 1.29+
# pods of the node ztunnel runs proxies for (src/inpod/metrics.rs: no `istio_` prefix)
ZTUNNEL_PROXIES = ztunnel_source("workload_manager_active_proxy_count")
ZTUNNEL_PENDING_PROXIES = ztunnel_source("workload_manager_pending_proxy_count")
# ztunnel registers no process CPU or memory series (src/metrics/process.rs, 1.28+: open and max
# fds only): its resources are the kubelet's cAdvisor series of its container, which carry the
# container's namespace and pod (not the node).
ZTUNNEL_CONTAINER = ZTUNNEL + ('container="istio-proxy"',)
ZTUNNEL_MEMORY = Source("container_memory_working_set_bytes", ZTUNNEL_CONTAINER, {"pod": "pod"})
ZTUNNEL_CPU = Source("container_cpu_usage_seconds_total", ZTUNNEL_CONTAINER, {"pod": "pod"})



@dataclass(frozen=True)
class Ztunnels:
    """What the alerts read of a mesh's per-node L4 proxies, by `node`."""

    up: Source  # 1 while Prometheus scrapes the node's ztunnel
    xds_failures: Source  # counter, by `reason`
    identity_failures: Source  # counter, by `response_flags`


ZTUNNELS = Ztunnels(up=ZTUNNEL_UP, xds_failures=ZTUNNEL_XDS_FAILURES, identity_failures=ZTUNNEL_IDENTITY_FAILURES)

# ztunnel series no source reads (1.29+; closed_total has the same flags in every version): the
# others are in the catalogue through the sources of meshobs/meshes/ztunnel.py (ztunnel.CATALOGUE)
ZTUNNEL_METRICS = ("istio_tcp_connections_failed_total",)

# --- waypoints ---------------------------------------------------------------------------------
WAYPOINT_REPORTER = "waypoint"  # Istio's stats filter reporter SERVER_GATEWAY
WAYPOINT_L7 = (f'reporter="{WAYPOINT_REPORTER}"',)  # a waypoint's L7 series
# Istio's stats filter's failed requests, at a sidecar or a waypoint alike: HTTP 5xx, or a gRPC call
# that failed (HTTP 200 with a grpc-status other than 0): disjoint series
L7_ERRORS = AnyOf((('response_code=~"5.."',), ('response_code!~"5..", grpc_response_status!~"0|"',)))
# The target label meshobs's waypoint job adds (the Gateway's name): a waypoint's own Envoy stats.
WAYPOINT_LABEL = "waypoint"
WAYPOINT = (f'{WAYPOINT_LABEL}!=""',)
WAYPOINT_POD_LABEL = pods.WAYPOINT_LABEL
WAYPOINT_STATS_PORT = pods.WAYPOINT_PORT[1]
