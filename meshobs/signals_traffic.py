"""Signals beyond HTTP at the destination: TCP, the caller's side, 4xx, gRPC status, sizes, the
proxies themselves and the control plane in depth (the dialect groups of meshobs/meshes/extended.py).

Each signal reads one field of one group (`"tcp.opened"`); where the dialect has None there the
signal is unavailable on that mesh and `unavailable_reason` says why, from the dialect.
"""

from __future__ import annotations

from dataclasses import replace

from meshobs.meshes.base import Dialect
from meshobs.promql import Source
from meshobs.signals import Signal

# normalized labels of a proxy's own numbers, and of a call seen from its caller
PROXY = ("namespace", "workload")
CALLER = ("source_namespace", "source_workload", "destination_service")

_PATHS: dict[str, str] = {}


def _field(name: str, title: str, unit: str, kind: str, path: str, facet: str | None = None,
           description: str = "", combine: str = "first") -> Signal:
    group, attr = path.split(".")

    def sources(dialect: Dialect) -> tuple[Source, ...]:
        source = getattr(getattr(dialect, group), attr)
        if isinstance(source, tuple):
            return source
        return (source,) if source is not None else ()

    _PATHS[name] = path
    return Signal(name, title, unit, kind, sources, facet=facet, description=description, combine=combine)


def _client_errors(dialect: Dialect) -> tuple[Source, ...]:
    """The destination's requests with a "4xx" facet, from the dialect's 4xx matchers."""
    matchers = dialect.http.client_errors
    if not matchers:
        return ()
    return (replace(dialect.requests, facets={**dialect.requests.facets, "4xx": matchers}),)


def unavailable_reason(signal: Signal, dialect: Dialect) -> str | None:
    """Why the dialect cannot answer the signal, None when it can."""
    if signal.available(dialect):
        return None
    path = _PATHS.get(signal.name)
    if path is None:
        return "not reported by this mesh"
    group, attr = path.split(".")
    holder = getattr(dialect, group)
    if signal.facet and getattr(holder, attr) is not None:
        return holder.unavailable.get(f"{attr}.{signal.facet}", f"{dialect.title} does not label it ({signal.facet})")
    return holder.reason(attr)


# --- TCP ---------------------------------------------------------------------------------------
TCP_OPENED = _field("tcp_opened", "TCP connections opened", "cps", "rate", "tcp.opened",
                    description="TCP connections accepted by the destination's proxy")
TCP_MTLS_OPENED = _field("tcp_mtls_opened", "TCP connections opened over mTLS", "cps", "rate", "tcp.opened", facet="mtls",
                         description="TCP connections that arrived over mutual TLS")
TCP_CLOSED = _field("tcp_closed", "TCP connections closed", "cps", "rate", "tcp.closed")
TCP_ACTIVE = _field("tcp_active", "TCP connections open", "short", "gauge_sum", "tcp.active")
TCP_SENT = _field("tcp_sent_bytes", "TCP bytes sent", "Bps", "rate", "tcp.sent_bytes",
                  description="bytes the destination's proxy sent back on TCP connections")
TCP_RECEIVED = _field("tcp_received_bytes", "TCP bytes received", "Bps", "rate", "tcp.received_bytes",
                      description="bytes the destination's proxy received on TCP connections")
TCP_CLIENT_SENT = _field("tcp_client_sent_bytes", "TCP bytes sent by callers", "Bps", "rate", "tcp.client_sent_bytes")
TCP_CLIENT_RECEIVED = _field("tcp_client_received_bytes", "TCP bytes received by callers", "Bps", "rate",
                             "tcp.client_received_bytes")
TCP_CONNECT_FAILURES = _field("tcp_connect_failures", "TCP connection failures", "cps", "rate", "tcp.connect_failures",
                              description="connections a caller could not open or that closed with an error")

# --- both sides of a call, 4xx, gRPC, sizes -----------------------------------------------------
CLIENT_REQUESTS = _field("client_requests", "Requests (caller side)", "reqps", "rate", "client.requests",
                         description="HTTP/gRPC requests as the calling proxy saw them", combine="largest")
CLIENT_ERRORS = _field("client_errors", "5xx (caller side)", "reqps", "rate", "client.requests", facet="5xx",
                       combine="largest")
CLIENT_4XX = _field("client_4xx", "4xx (caller side)", "reqps", "rate", "client.requests", facet="4xx", combine="largest")
CLIENT_DURATION = _field("client_duration", "Latency (caller side)", "s", "quantile", "client.duration")
REQUESTS_4XX = Signal("requests_4xx", "4xx responses", "reqps", "rate", _client_errors, facet="4xx",
                      description="requests answered with a 4xx status at the destination")
INBOUND_DURATION = _field("inbound_duration", "Inbound latency", "s", "quantile", "http.inbound_duration",
                          description="time to serve a request at the destination workload's proxy")
GRPC_REQUESTS = _field("grpc_requests", "gRPC calls", "reqps", "rate", "http.grpc",
                       description="gRPC calls at the destination by grpc-status")
ROUTE_REQUESTS = _field("route_requests", "Requests by route", "reqps", "rate", "http.routes",
                        description="requests at the destination by route (Linkerd ServiceProfile routes)")
ROUTE_ERRORS = _field("route_errors", "Failures by route", "reqps", "rate", "http.routes", facet="5xx")
REQUEST_SIZE = _field("request_size", "Request size", "bytes", "quantile", "http.request_bytes")
RESPONSE_SIZE = _field("response_size", "Response size", "bytes", "quantile", "http.response_bytes")

# --- the proxies ------------------------------------------------------------------------------
PROXY_LIVE = _field("proxy_live", "Proxies live", "short", "gauge_min", "proxy_health.live",
                    description="1 while the proxy serves (0 while it initializes or drains)")
PROXY_MEMORY = _field("proxy_memory", "Proxy memory", "bytes", "gauge_sum", "proxy_health.memory")
PROXY_CPU = _field("proxy_cpu", "Proxy CPU", "percentunit", "rate", "proxy_health.cpu",
                   description="CPU seconds per second used by the proxy")
PROXY_CONNECTIONS = _field("proxy_connections", "Proxy connections", "short", "gauge_sum", "proxy_health.connections")
UPSTREAM_ENDPOINTS = _field("upstream_endpoints", "Upstream endpoints", "short", "gauge_sum", "proxy_health.endpoints")
UPSTREAM_HEALTHY = _field("upstream_healthy_endpoints", "Healthy upstream endpoints", "short", "gauge_sum",
                          "proxy_health.healthy_endpoints")
NO_HEALTHY_UPSTREAM = _field("no_healthy_upstream", "Calls with no healthy upstream", "ops", "rate",
                             "proxy_health.no_healthy_upstream")
UPSTREAM_CONNECT_FAILURES = _field("upstream_connect_failures", "Upstream connect failures", "ops", "rate",
                                   "proxy_health.upstream_connect_failures")
CIRCUIT_BREAKER_OVERFLOW = _field("circuit_breaker_overflow", "Circuit breaker overflows", "ops", "rate",
                                  "proxy_health.circuit_breaker_overflow")
OUTLIER_EJECTIONS = _field("outlier_ejections", "Endpoints ejected", "short", "gauge_sum", "proxy_health.outlier_ejections")

# --- the control plane in depth ---------------------------------------------------------------
CP_VERSIONS = _field("cp_versions", "Control plane versions", "short", "gauge_count", "control_plane_detail.versions")
CP_INSTANCES = _field("cp_instances", "Control plane instances running", "short", "gauge_count",
                      "control_plane_detail.instances")
CP_MEMORY = _field("cp_memory", "Control plane memory", "bytes", "gauge_sum", "control_plane_detail.memory")
CP_CPU = _field("cp_cpu", "Control plane CPU", "percentunit", "rate", "control_plane_detail.cpu")
CP_GOROUTINES = _field("cp_goroutines", "Goroutines", "short", "gauge_sum", "control_plane_detail.goroutines")
CP_PUSHES = _field("cp_pushes_by_type", "xDS pushes by type", "ops", "rate", "control_plane_detail.pushes_by_type")
CP_PUSH_ERRORS = _field("cp_push_errors", "Push errors", "ops", "rate", "control_plane_detail.push_errors")
CP_PUSH_TIME = _field("cp_push_time", "Push time", "s", "quantile", "control_plane_detail.push_time")
CP_INJECTIONS = _field("cp_injections", "Sidecar injection webhook", "ops", "rate", "control_plane_detail.webhook_injections")
CP_VALIDATIONS = _field("cp_validations", "Validation webhook", "ops", "rate", "control_plane_detail.webhook_validations")
CP_GRPC = _field("cp_grpc", "Controller gRPC calls", "ops", "rate", "control_plane_detail.grpc_requests")
CP_RAFT_COMMIT = _field("cp_raft_commit", "Raft commit time p99", "s", "gauge_max", "control_plane_detail.raft_commit_time")
CP_LEADER_CONTACT = _field("cp_leader_contact", "Leader last contact p99", "s", "gauge_max",
                           "control_plane_detail.leader_last_contact")
CP_AUTOPILOT = _field("cp_autopilot", "Autopilot healthy", "short", "gauge_min", "control_plane_detail.autopilot_healthy")
CP_ELECTIONS = _field("cp_elections", "Leader elections", "short", "increase", "control_plane_detail.leader_elections")
CP_RAFT_APPLIES = _field("cp_raft_applies", "Raft commits", "ops", "rate", "control_plane_detail.raft_applies")
CP_DATAPLANES = _field("cp_dataplanes", "Connected dataplanes", "short", "gauge_sum",
                       "control_plane_detail.connected_dataplanes")

ALL: tuple[Signal, ...] = tuple(v for v in tuple(globals().values()) if isinstance(v, Signal))

