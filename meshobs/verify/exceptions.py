"""Queries or selectors allowed to be empty, each with the reason. Nothing is skipped silently:
an excused emptiness is listed in the output and the report with its reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from meshobs import promql
from meshobs.meshes import ambient, ztunnel
from meshobs.verify.sources import Query


@dataclass(frozen=True)
class Expected:
    """`selector`: a selector text this query may contain that matches nothing (None: the whole
    query may return no series). `mesh` None applies to every mesh; `item` is a panel title or
    rule name, None for any. `unless_present`: a selector that voids the excuse when it matches
    series (a ztunnel's panels may be empty on a mesh without ztunnels, never on one with them)."""

    reason: str
    selector: str | None = None
    mesh: str | None = None
    item: str | None = None
    unless_present: str | None = None

    def covers(self, query: Query, selector: str | None, present: Callable[[str], bool] | None = None) -> bool:
        if self.mesh not in (None, query.mesh) or self.item not in (None, query.item):
            return False
        if self.unless_present and present is not None and present(self.unless_present):
            return False
        if self.selector is None:
            return selector is None
        return selector is not None and self.selector in selector


_NO_DENIAL = "empty while nothing is denied: the series appear with the first denial"
_NO_ERROR = "empty while no request fails: the series appear with the first error response"
_NO_PLAINTEXT = "empty while all traffic is mutual TLS: the series appear with the first plaintext request"
_NO_DRY_RUN = "empty until a dry-run (shadow) authorization policy decides: the series appear with its first decision"
_NO_CONTROL_PLANE_ERROR = "empty while the control plane has no errors: the counter appears with the first one"
_NOT_LINKED = "empty while this cluster is linked to no other: {what} appear with the first link"
_NO_GATEWAY_CALLS = _NOT_LINKED.format(what="calls through a multicluster gateway (`dst_target_cluster`)")
_NO_GATEWAY_PROBES = _NOT_LINKED.format(what="the service mirror's gateway probes")
_NO_PEERINGS = _NOT_LINKED.format(what="the servers' cluster peerings")
_AMBIENT_ONLY = ("exists only where pods run in ambient mode: series of the ztunnels (or recorded from them), which a "
                 "mesh of sidecars alone does not have; their failure series appear with the first failure")
_NO_ADMISSION = "empty until the webhook has answered an admission request since it started: the counter appears with the first"
_NO_WAYPOINT = "a waypoint's series: none on a mesh without ambient waypoints (none is scraped)"
_ZTUNNELS = promql.selector(ambient.ZTUNNEL_UP)
_WAYPOINTS = promql.selector(ztunnel.WAYPOINT_UP)

# Series that exist only once something failed. A selector on them may match nothing in a healthy
# mesh; a query empty only because of such selectors is noted, not failed. When the data has
# failures (as the tests' data does), these are checked like any other.
EXPECTED: tuple[Expected, ...] = (
    Expected(
        'ALERTS exist only while an alert fires; the panel shows 0 through `or vector(0)` otherwise',
        selector='ALERTS{alertstate="firing"',
    ),
    Expected(_NO_DRY_RUN, selector="authz_dry_run_"),  # the exporter's series and the recorded ones
    Expected(_NO_DENIAL, selector='response_code="403"', mesh="istio"),
    Expected(_NO_ERROR, selector='response_code=~"5.."', mesh="istio"),
    Expected("empty while no gRPC call fails: the series appear with the first failed gRPC status",
             selector='grpc_response_status!~"0|"', mesh="istio"),
    Expected(_NO_PLAINTEXT, selector='connection_security_policy="none"', mesh="istio"),
    Expected(_NO_CONTROL_PLANE_ERROR, selector="pilot_total_xds_rejects", mesh="istio"),
    Expected("network RBAC stats exist only on sidecars of TCP services with an L4 AuthorizationPolicy",
             selector="envoy_rbac{", mesh="istio"),
    Expected(_NO_CONTROL_PLANE_ERROR, selector="citadel_server_csr_sign_err_count", mesh="istio"),
    # Istio ambient (meshobs/meshes/ambient.py): a mesh of sidecars only has no ztunnel
    # (a ztunnel's own series may be empty only while no ztunnel is scraped at all)
    Expected(_AMBIENT_ONLY, selector=ambient.ZTUNNEL[-1], mesh="istio", unless_present=_ZTUNNELS),
    Expected(_AMBIENT_ONLY, selector=":mesh_ztunnel_", mesh="istio"),
    Expected("exists only where a waypoint serves ambient pods (`reporter=\"waypoint\"`)",
             selector=f'reporter="{ambient.WAYPOINT_REPORTER}"', mesh="istio", unless_present=_WAYPOINTS),
    Expected("empty while no request is answered 4xx: the series appear with the first", selector='response_code=~"4.."',
             mesh="istio"),
    Expected(_NO_DENIAL, selector='status_code="403"', mesh="linkerd"),
    Expected(_NO_DENIAL, selector="inbound_http_authz_deny_total", mesh="linkerd"),
    Expected(_NO_ERROR, selector='status_code=~"5.."', mesh="linkerd"),
    Expected("exists only for Servers of opaque/TCP protocols (HTTP Servers authorize per request)",
             selector="inbound_tcp_authz_allow_total", mesh="linkerd"),
    Expected(_NO_PLAINTEXT, selector='tls!="true"', mesh="linkerd"),
    Expected(_NO_CONTROL_PLANE_ERROR, selector='grpc_code!="OK"', mesh="linkerd"),
    Expected(_NO_CONTROL_PLANE_ERROR, selector='grpc_code=~"', mesh="linkerd"),
    # Envoy creates per-code upstream counters on first use (downstream class counters always exist)
    Expected(_NO_DENIAL, selector='envoy_response_code="403"', mesh="consul"),
    Expected(_NO_ERROR, selector='envoy_response_code=~"5.."', mesh="consul"),
    # ... and the callers' per-class upstream counters too
    Expected(_NO_ERROR, selector='envoy_cluster_upstream_rq_xx{local_cluster!="",consul_destination_service!="",'
                                 'envoy_response_code_class="5"}', mesh="consul"),
    Expected("exported only where the exporter learns a certificate's start (Envoy's /certs); the rules fall back "
             "to the mesh's default leaf lifetime", selector="meshobs_cert_not_before_timestamp_seconds"),
    Expected("linkerd2-proxy exposes only its own leaf's expiry: issuer and trust anchor expiry come from the "
             "exporter where it knows them", selector='cert=~"(?:ca|root|issuer)"', mesh="linkerd"),
    Expected("a lazy counter compared with its value a window ago: empty while Prometheus holds less history "
             "than the window", selector=" offset "),
    # Consul puts the network RBAC filter (L4 intentions) on TCP services' sidecars and the HTTP
    # RBAC filter (L7) on HTTP services' sidecars: a mesh of one kind has only one family
    Expected("exists only on sidecars of TCP services (L4 intentions, `connect_authz`)",
             selector="envoy_rbac_", mesh="consul"),
    Expected("exists only on sidecars of HTTP services (L7 intentions)", selector="envoy_http_rbac_", mesh="consul"),
    # Upstream failures and protocols a mesh may simply not have yet (meshobs/signals_traffic.py)
    Expected("empty while no call fails for that reason: Envoy response flags UH/UF/URX/UO appear on the callers' "
             "series with the first such failure", selector='response_flags=~"(.*,)?(', mesh="istio"),
    Expected("exists only where outlier detection is configured (a DestinationRule) and kept by meshobs's "
             "proxyStatsMatcher", selector="envoy_cluster_outlier_detection_ejections_active", mesh="istio"),
    Expected("empty while the mesh has no gRPC service", selector='request_protocol="grpc"', mesh="istio"),
    Expected("empty while the mesh has no gRPC service", selector='grpc_status!=""', mesh="linkerd"),
    Expected(_NO_CONTROL_PLANE_ERROR, selector="pilot_total_xds_internal_errors", mesh="istio"),
    Expected(_NO_CONTROL_PLANE_ERROR, selector="pilot_xds_push_context_errors", mesh="istio"),
    Expected("empty while no connection closes with an error", selector='errno!=""', mesh="linkerd"),
    Expected("exists only for services with a ServiceProfile (per-route metrics)", selector="route_response_total",
             mesh="linkerd"),
    Expected("exists on linkerd2-proxy 2.13 and later only", selector="outbound_http_balancer_endpoints", mesh="linkerd"),
    # Admission-webhook counters are born with the first admission request they count
    Expected(_NO_ADMISSION, selector="sidecar_injection_", mesh="istio"),
    Expected(_NO_ADMISSION, selector="galley_validation_", mesh="istio"),
    Expected(_NO_ADMISSION, selector="proxy_inject_admission_responses_total", mesh="linkerd"),
    # Ambient data planes: their selectors may be empty only while none of them is scraped at all
    Expected(_NO_WAYPOINT, selector=ambient.WAYPOINT[-1], mesh="istio", unless_present=_WAYPOINTS),
    Expected(_NO_DENIAL, selector=ambient.flags_matcher(ambient.DENY), mesh="istio"),
    Expected("empty while no ztunnel connection fails: the series appear with the first response flag",
             selector=ambient.FAILED, mesh="istio"),
    Expected("empty while no ztunnel fails to get or present a workload certificate",
             selector=ambient.flags_matcher(ambient.IDENTITY_FLAGS), mesh="istio"),
    Expected(_NO_PLAINTEXT, selector=ambient.PLAINTEXT, mesh="istio"),
    Expected(_NO_DENIAL, selector='authz_enforce_result="denied"', mesh="istio"),
    Expected("exists only where ztunnel's DNS proxy is on (ISTIO_META_DNS_CAPTURE) and has answered",
             selector="istio_dns_requests_total", mesh="istio"),
    Expected("exists on ztunnel 1.29 and later only", selector="istio_tcp_sockets_open", mesh="istio"),
    Expected("empty until a ztunnel's xDS stream to istiod has ended once: the series appear with the first end",
             selector="istio_xds_connection_terminations_total", mesh="istio"),
    *(Expected("cAdvisor's container counters come from the kubelet's scrape job (kube-prometheus), not from "
               "meshobs's jobs", selector=metric) for metric in ("container_cpu_usage_seconds_total",
                                                                 "container_memory_working_set_bytes")),
    # Traffic between clusters: series that exist only once the mesh spans clusters
    Expected(_NO_GATEWAY_CALLS, selector='dst_target_cluster!=""', mesh="linkerd"),
    Expected(_NO_GATEWAY_PROBES, selector="gateway_alive", mesh="linkerd"),
    Expected(_NO_GATEWAY_PROBES, selector="gateway_probe_latency_ms_bucket", mesh="linkerd"),
    Expected(_NO_PEERINGS, selector="consul_peering_healthy", mesh="consul"),
    # ... and recorded from them (meshobs/recordings_crosscluster.py): Linkerd counts only calls to other clusters
    Expected(_NO_ERROR, selector=":mesh_cross_cluster_request_errors:rate"),
    Expected(_NO_GATEWAY_CALLS, selector=":mesh_cross_cluster_", mesh="linkerd"),
    Expected(_NO_GATEWAY_PROBES, selector=":mesh_remote_cluster_up:", mesh="linkerd"),
    Expected(_NO_PEERINGS, selector=":mesh_remote_cluster_up:", mesh="consul"),
)


def excuse(query: Query, selector: str | None = None, present: Callable[[str], bool] | None = None) -> str | None:
    """The declared reason the query (or one of its selectors) may be empty, if any; `present`
    says whether a selector matches series (for the excuses that hold only while nothing does)."""
    for expected in EXPECTED:
        if expected.covers(query, selector, present):
            return expected.reason
    return None
