"""Rows beyond HTTP at the destination for the overview, service, workload and control-plane
dashboards, and the proxy dashboard: TCP, both sides of every call, 4xx, gRPC, sizes, percentiles,
proxies, upstream health, the control plane in depth.

A panel is rendered only where the mesh reports its signal (meshobs/signals_traffic.py); a
query of a multi-query panel is dropped where its signal is missing. Rates are over
`$__rate_interval` unless read from a recording rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshobs import promql
from meshobs import recordings as rec
from meshobs import recordings_traffic as rt
from meshobs import signals
from meshobs import signals_traffic as st
from meshobs.render.grafana import GOOD_HIGH, Panel, Row
from meshobs.render.grafana import Query as Q
from meshobs.signals import Signal

if TYPE_CHECKING:
    from meshobs.render.dashboards import _Context

PERCENTILES = (0.5, 0.9, 0.95, 0.99)
SIZE_PERCENTILES = (0.5, 0.9, 0.99)
SERVICE_LEGEND = "{{destination_service}}.{{destination_namespace}}"
CALLER_LEGEND = "{{source_workload}}.{{source_namespace}}"


def _available(c: "_Context", *wanted: Signal) -> bool:
    return all(s.available(c.dialect) for s in wanted)


def _queries(c: "_Context", parts: tuple[tuple[Signal, str], ...], by: tuple[str, ...], **sel: str) -> tuple[Q, ...]:
    """One query per (signal, legend) the mesh reports."""
    return tuple(Q(c.live(signal, by, **sel), legend) for signal, legend in parts if signal.available(c.dialect))


def _panels(*candidates: Panel | None) -> tuple[Panel, ...]:
    return tuple(p for p in candidates if p is not None and p.queries)


def _success(c: "_Context", errors: Signal, total: Signal, by: tuple[str, ...], **sel: str) -> str:
    return f"1 - {promql.ratio(f'({c.live(errors, by, **sel)})', f'({c.live(total, by, **sel)})')}"


def _percentiles(c: "_Context", signal: Signal, by: tuple[str, ...], quantiles: tuple[float, ...], legend: str,
                 **sel: str) -> tuple[Q, ...]:
    return tuple(Q(c.live(signal, by, quantile=q, **sel), f"p{q * 100:g} {legend}") for q in quantiles)


def _stat(title: str, queries: tuple[Q, ...], unit: str, description: str = "", **kw) -> Panel:
    return Panel(title, "stat", queries, unit=unit, width=4, height=4, description=description, **kw)


# --- overview ----------------------------------------------------------------------------------
def overview_rows(c: "_Context") -> tuple[Row, ...]:
    w = rt.tcp_window(c.cfg)
    by_workload = (c.cluster,) + signals.WORKLOAD
    tcp: list[Panel | None] = []
    if _available(c, st.TCP_OPENED):
        opened = c.ref(rt.tcp_opened(w))
        tcp.append(_stat("TCP connections opened", (Q(promql.or_value(f"sum({opened})", 0)),), "cps",
                         "TCP connections accepted per second by all meshed workloads."))
        if _available(c, st.TCP_MTLS_OPENED):
            tcp.append(_stat("TCP mTLS share", (Q(promql.ratio(f"sum({c.ref(rt.tcp_mtls_opened(w))})", f"sum({opened})")),),
                             "percentunit", "Share of TCP connections that arrived over mutual TLS.", thresholds=GOOD_HIGH))
        tcp.append(Panel("TCP workloads", "table", (Q(f"sum by ({', '.join(by_workload)}) ({opened})", instant=True),),
                         unit="cps", description="Workloads accepting TCP connections, by connections opened per second."))
    if _available(c, st.TCP_RECEIVED):
        tcp.append(_stat("TCP throughput", (Q(promql.or_value(f"sum({c.ref(rt.tcp_received(w))})", 0), "received"),
                                            Q(promql.or_value(f"sum({c.ref(rt.tcp_sent(w))})", 0), "sent")), "Bps"))
        tcp.append(Panel("TCP bytes received by workload", "timeseries",
                         (Q(c.ref(rt.tcp_received(w)), "{{destination_workload}}.{{destination_namespace}}"),), unit="Bps"))
    workloads = c.ref(rec.workload_requests(c.cfg.alerts.plaintext.window))
    http = _panels(
        Panel("HTTP/gRPC workloads", "table", (Q(f"sum by ({', '.join(by_workload)}) ({workloads})", instant=True),),
              unit="reqps", description="Workloads serving HTTP or gRPC, by requests per second."),
        Panel("4xx responses by workload", "timeseries",
              _queries(c, ((st.REQUESTS_4XX, "{{destination_workload}}.{{destination_namespace}}"),), by_workload),
              unit="reqps"),
        Panel("Success ratio seen by callers", "timeseries",
              (Q(_success(c, st.CLIENT_ERRORS, st.CLIENT_REQUESTS, (c.cluster, "destination_service")),
                 "{{destination_service}}"),) if _available(c, st.CLIENT_REQUESTS) else (),
              unit="percentunit", min_value=0, max_value=1,
              description="Non-5xx share of calls by destination service as the callers' proxies saw them: "
                          "it includes the calls no destination pod answered."),
    )
    return tuple(row for row in (Row("TCP", _panels(*tcp)), Row("Workloads and callers", http)) if row.panels)


# --- service -----------------------------------------------------------------------------------
def service_rows(c: "_Context") -> tuple[Row, ...]:
    sel = dict(destination_namespace="namespace", destination_service="service")
    by_service = (c.cluster, "destination_namespace", "destination_service")
    by_caller = (c.cluster,) + st.CALLER
    clients = _panels(
        Panel("Requests: server and client view", "timeseries",
              _queries(c, ((signals.REQUESTS, "server {{destination_service}}"),
                           (st.CLIENT_REQUESTS, "client {{destination_service}}")), (c.cluster, "destination_service"), **sel),
              unit="reqps", description="The destination's proxies (server) and the callers' proxies (client): "
                                        "a gap is calls that never reached a destination pod."),
        Panel("Success ratio by caller", "timeseries",
              (Q(_success(c, st.CLIENT_ERRORS, st.CLIENT_REQUESTS, by_caller, **sel), CALLER_LEGEND),)
              if _available(c, st.CLIENT_REQUESTS) else (), unit="percentunit", min_value=0, max_value=1),
        Panel("p99 latency by caller", "timeseries",
              _percentiles(c, st.CLIENT_DURATION, by_caller, (0.99,), CALLER_LEGEND, **sel) if _available(c, st.CLIENT_DURATION) else (),
              unit="s"),
        Panel("4xx by caller", "timeseries", _queries(c, ((st.CLIENT_4XX, CALLER_LEGEND),), by_caller, **sel), unit="reqps"),
    )
    detail = _panels(
        Panel("Latency percentiles", "timeseries",
              _percentiles(c, signals.REQUEST_DURATION, by_service, PERCENTILES, "", **sel), unit="s"),
        Panel("gRPC calls by status", "timeseries",
              _queries(c, ((st.GRPC_REQUESTS, "{{grpc_status}}"),), by_service + ("grpc_status",), **sel), unit="reqps",
              description="gRPC calls by grpc-status (0 OK): gRPC failures travel as HTTP 200."),
        Panel("Request size", "timeseries",
              _percentiles(c, st.REQUEST_SIZE, by_service, SIZE_PERCENTILES, "", **sel) if _available(c, st.REQUEST_SIZE) else (),
              unit="bytes"),
        Panel("Response size", "timeseries",
              _percentiles(c, st.RESPONSE_SIZE, by_service, SIZE_PERCENTILES, "", **sel) if _available(c, st.RESPONSE_SIZE) else (),
              unit="bytes"),
    )
    tcp = _panels(
        Panel("TCP bytes exchanged with callers", "timeseries",
              _queries(c, ((st.TCP_CLIENT_SENT, f"from {CALLER_LEGEND}"), (st.TCP_CLIENT_RECEIVED, f"to {CALLER_LEGEND}")),
                       by_caller, **sel), unit="Bps"),
        Panel("TCP connection failures by caller", "timeseries",
              _queries(c, ((st.TCP_CONNECT_FAILURES, CALLER_LEGEND),), by_caller, **sel), unit="cps"),
    )
    return tuple(r for r in (Row("Clients of the service", clients), Row("Percentiles, 4xx, gRPC and sizes", detail),
                             Row("TCP", tcp)) if r.panels)


# --- workload ----------------------------------------------------------------------------------
def workload_rows(c: "_Context") -> tuple[Row, ...]:
    inbound = dict(destination_namespace="namespace", destination_workload="workload")
    outbound = dict(source_namespace="namespace", source_workload="workload")
    by_workload = (c.cluster,) + signals.WORKLOAD
    by_destination = (c.cluster, "source_namespace", "source_workload", "destination_service")
    w = rt.tcp_window(c.cfg)
    inbound_panels = _panels(
        Panel("Inbound latency percentiles", "timeseries",
              _percentiles(c, st.INBOUND_DURATION, by_workload, PERCENTILES, "", **inbound), unit="s"),
        Panel("Inbound 4xx", "timeseries", _queries(c, ((st.REQUESTS_4XX, "{{destination_workload}}"),), by_workload, **inbound),
              unit="reqps"),
        Panel("Inbound requests by route", "timeseries",
              _queries(c, ((st.ROUTE_REQUESTS, "{{route}}"),), by_workload + ("route",), **inbound), unit="reqps"),
        Panel("Inbound success ratio by route", "timeseries",
              (Q(_success(c, st.ROUTE_ERRORS, st.ROUTE_REQUESTS, by_workload + ("route",), **inbound), "{{route}}"),)
              if _available(c, st.ROUTE_REQUESTS) else (), unit="percentunit", min_value=0, max_value=1),
    )
    outbound_panels = _panels(
        Panel("Outbound requests by destination and code", "timeseries",
              _queries(c, ((st.CLIENT_REQUESTS, "{{destination_service}} {{code}}"),), by_destination + ("code",), **outbound),
              unit="reqps"),
        Panel("Outbound success ratio by destination", "timeseries",
              (Q(_success(c, st.CLIENT_ERRORS, st.CLIENT_REQUESTS, by_destination, **outbound), "{{destination_service}}"),)
              if _available(c, st.CLIENT_REQUESTS) else (), unit="percentunit", min_value=0, max_value=1),
        Panel("Outbound p99 latency by destination", "timeseries",
              _percentiles(c, st.CLIENT_DURATION, by_destination, (0.99,), "{{destination_service}}", **outbound)
              if _available(c, st.CLIENT_DURATION) else (), unit="s"),
    )
    tcp: list[Panel | None] = [
        Panel("TCP connections opened and closed", "timeseries",
              _queries(c, ((st.TCP_OPENED, "opened"), (st.TCP_CLOSED, "closed")), by_workload, **inbound), unit="cps"),
        Panel("TCP connections open", "timeseries", _queries(c, ((st.TCP_ACTIVE, "open"),), by_workload, **inbound)),
        Panel("Inbound TCP bytes", "timeseries",
              _queries(c, ((st.TCP_RECEIVED, "received"), (st.TCP_SENT, "sent")), by_workload, **inbound), unit="Bps"),
    ]
    if _available(c, st.TCP_MTLS_OPENED):
        tcp.append(Panel("Inbound TCP mTLS share", "timeseries",
                         (Q(promql.ratio(c.ref(rt.tcp_mtls_opened(w), **inbound), c.ref(rt.tcp_opened(w), **inbound)),
                            "{{destination_workload}}"),), unit="percentunit", min_value=0, max_value=1))
    tcp += [
        Panel("Outbound TCP bytes by destination", "timeseries",
              _queries(c, ((st.TCP_CLIENT_SENT, "sent to {{destination_service}}"),
                           (st.TCP_CLIENT_RECEIVED, "received from {{destination_service}}")), by_destination, **outbound),
              unit="Bps"),
        Panel("Outbound TCP connection failures", "timeseries",
              _queries(c, ((st.TCP_CONNECT_FAILURES, "{{destination_service}}"),), by_destination, **outbound), unit="cps"),
    ]
    return tuple(r for r in (Row("Inbound percentiles and 4xx", inbound_panels), Row("Outbound (this workload as caller)", outbound_panels),
                             Row("TCP", _panels(*tcp))) if r.panels)


# --- proxies -----------------------------------------------------------------------------------
def proxy(c: "_Context") -> tuple[str, bytes]:
    sel = dict(namespace="namespace", workload="workload")
    callers = dict(source_namespace="namespace", source_workload="workload")
    by_proxy = (c.cluster,) + st.PROXY
    by_caller = (c.cluster,) + st.CALLER
    legend = "{{workload}}.{{namespace}}"
    resources = _panels(
        _stat("Proxies not live", (Q(promql.or_value(f"count({c.ref(rt.PROXY_LIVE, **sel)} == 0)", 0)),), "short",
              "Workloads with a proxy initializing or draining.", thresholds=((None, "green"), (1, "red")))
        if _available(c, st.PROXY_LIVE) else None,
        _stat("Proxy memory", (Q(f"sum({c.ref(rt.PROXY_MEMORY, **sel)})"),), "bytes"),
        Panel("Memory by workload", "timeseries", (Q(c.ref(rt.PROXY_MEMORY, **sel), legend),), unit="bytes"),
        Panel("CPU by workload", "timeseries", _queries(c, ((st.PROXY_CPU, legend),), by_proxy, **sel), unit="percentunit",
              description="CPU seconds per second of the proxies (cAdvisor's container counter on Envoy meshes)."),
        Panel("Connections by workload", "timeseries", _queries(c, ((st.PROXY_CONNECTIONS, legend),), by_proxy, **sel)),
        Panel("Liveness by workload", "timeseries", (Q(c.ref(rt.PROXY_LIVE, **sel), legend),), min_value=0, max_value=1)
        if _available(c, st.PROXY_LIVE) else None,
    )
    upstreams = _panels(
        Panel("Upstream endpoints: healthy and known", "timeseries",
              tuple(Q(f"sum by ({c.cluster}, destination_service) ({c.ref(recorded, **callers)})", f"{kind} {{{{destination_service}}}}")
                    for recorded, signal, kind in ((rt.HEALTHY_ENDPOINTS, st.UPSTREAM_HEALTHY, "healthy"),
                                                   (rt.ENDPOINTS, st.UPSTREAM_ENDPOINTS, "known"))
                    if _available(c, signal))),
        Panel("Calls with no healthy upstream", "timeseries",
              _queries(c, ((st.NO_HEALTHY_UPSTREAM, f"{CALLER_LEGEND} → {{{{destination_service}}}}"),), by_caller, **callers),
              unit="ops"),
        Panel("Upstream connect failures", "timeseries",
              _queries(c, ((st.UPSTREAM_CONNECT_FAILURES, f"{CALLER_LEGEND} → {{{{destination_service}}}}"),), by_caller,
                       **callers), unit="ops"),
        Panel("Circuit breaker overflows", "timeseries",
              _queries(c, ((st.CIRCUIT_BREAKER_OVERFLOW, f"{CALLER_LEGEND} → {{{{destination_service}}}}"),), by_caller,
                       **callers), unit="ops"),
        Panel("Endpoints ejected by outlier detection", "timeseries",
              (Q(c.ref(rt.EJECTIONS, **callers), f"{CALLER_LEGEND} → {{{{destination_service}}}}"),)
              if _available(c, st.OUTLIER_EJECTIONS) else ()),
    )
    variables = (c.variable("namespace", "Namespace", rt.PROXY_MEMORY, "namespace"),
                 c.variable("workload", "Workload", rt.PROXY_MEMORY, "workload", namespace="namespace"))
    return c.dashboard("proxy", "Proxies", "The sidecar proxies themselves: resources, connections, liveness and "
                       "the health of the upstreams they call.", variables,
                       tuple(r for r in (Row("Proxies", resources), Row("Upstream health", upstreams)) if r.panels))


# --- control plane -----------------------------------------------------------------------------
def control_plane_rows(c: "_Context") -> tuple[Row, ...]:
    everything = (c.cluster,)
    by_component = (c.cluster, "component")
    resources = _panels(
        Panel("Versions running", "timeseries", _queries(c, ((st.CP_VERSIONS, "{{version}}"),), (c.cluster, "version"))),
        Panel("Instances by component", "timeseries", _queries(c, ((st.CP_INSTANCES, "{{component}}"),), by_component)),
        Panel("Memory", "timeseries", _queries(c, ((st.CP_MEMORY, "{{component}}"),), by_component), unit="bytes"),
        Panel("CPU", "timeseries", _queries(c, ((st.CP_CPU, "{{component}}"),), by_component), unit="percentunit"),
        Panel("Goroutines", "timeseries", _queries(c, ((st.CP_GOROUTINES, "{{component}}"),), by_component)),
    )
    distribution = _panels(
        Panel("xDS pushes by type", "timeseries", _queries(c, ((st.CP_PUSHES, "{{type}}"),), (c.cluster, "type")), unit="ops",
              description="Configuration pushes to proxies by xDS type; send errors are not pushes."),
        Panel("Push errors", "timeseries", (Q(promql.or_value(c.live(st.CP_PUSH_ERRORS, everything), 0), "errors"),)
              if _available(c, st.CP_PUSH_ERRORS) else (), unit="ops"),
        Panel("Push time", "timeseries",
              _percentiles(c, st.CP_PUSH_TIME, everything, (0.5, 0.99), "") if _available(c, st.CP_PUSH_TIME) else (), unit="s"),
        Panel("Sidecar injection webhook", "timeseries", _queries(c, ((st.CP_INJECTIONS, "{{outcome}}"),), (c.cluster, "outcome")),
              unit="ops"),
        Panel("Validation webhook", "timeseries", _queries(c, ((st.CP_VALIDATIONS, "{{outcome}}"),), (c.cluster, "outcome")),
              unit="ops"),
        Panel("Controller gRPC calls by code", "timeseries",
              _queries(c, ((st.CP_GRPC, "{{component}} {{grpc_code}}"),), (c.cluster, "component", "grpc_code")), unit="ops",
              description="Calls the identity, destination and policy controllers answered, by gRPC code."),
    )
    servers = _panels(
        Panel("Raft commit time p99", "timeseries", _queries(c, ((st.CP_RAFT_COMMIT, "p99"),), everything), unit="s"),
        Panel("Raft commits", "timeseries", _queries(c, ((st.CP_RAFT_APPLIES, "commits"),), everything), unit="ops",
              description="Transactions committed through the servers' consensus log (the leader counts them)."),
        Panel("Leader last contact p99", "timeseries", _queries(c, ((st.CP_LEADER_CONTACT, "p99"),), everything), unit="s"),
        Panel("Autopilot healthy", "timeseries", _queries(c, ((st.CP_AUTOPILOT, "healthy"),), everything), min_value=0, max_value=1),
        Panel("Leader elections", "timeseries", _queries(c, ((st.CP_ELECTIONS, "elections"),), everything)),
        Panel("Connected dataplanes", "timeseries", _queries(c, ((st.CP_DATAPLANES, "dataplanes"),), everything)),
    )
    return tuple(r for r in (Row("Versions and resources", resources), Row("Configuration distribution", distribution),
                             Row("Servers", servers)) if r.panels)
