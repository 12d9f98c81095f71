"""The dashboards of Istio's ambient data planes: `dashboards/istio/ztunnel.json` (one ztunnel per
node: connections, bytes, failures by response flag, mTLS, identity, xDS, workload manager, DNS,
resources) and `dashboards/istio/waypoint.json` (per waypoint: L7 requests, failures, latency,
RBAC denials by destination service, Envoy health).

Queries come from the sources in meshobs/meshes/ztunnel.py through meshobs.promql; ambient
workloads on the overview, service, workload and security dashboards come from the signal model.
"""

from __future__ import annotations

from dataclasses import replace

from meshobs import promql, signals
from meshobs.config import Config
from meshobs.meshes import ambient as a
from meshobs.meshes import ztunnel as z
from meshobs.meshes.base import Dialect
from meshobs.promql import Filters, Query, Source
from meshobs.render.dashboards import BAD_HIGH, FAILED, GOOD_HIGH, _Context, _success_ratio, _total
from meshobs.render.dashboards_traffic import CALLER_LEGEND, SERVICE_LEGEND
from meshobs.render.dashboards_traffic import _stat as traffic_stat
from meshobs.render.grafana import RATE, Panel, Row, Variable
from meshobs.render.grafana import Query as Q

# Dialects with ambient data planes.
AMBIENT_MESHES = ("istio",)
NODE_LEGEND = "{{node}}"
WORKLOAD_LEGEND = "{{destination_workload}}.{{destination_namespace}}"
CERTIFICATES = ("ztunnel exposes no certificate-expiry metric, and its admin port (15000, `/config_dump` with each "
                "identity's certificate chain) listens on localhost only: nothing read-only outside the pod can read "
                "it. What shows a certificate problem: connections failed with IDENTITY_ERROR (ztunnel could not get "
                "a workload's certificate) or TLS_FAILURE, and istiod's signing of the certificates ztunnel asks for.")

KUBELET = ("ztunnel exposes no CPU or memory series of its own (only open and maximum file descriptors): these are "
           "the kubelet's cAdvisor series, scraped by the cluster's kubelet job, per pod (they carry no node label, "
           "so the node variable does not filter them).")


class _Scope:
    """Queries of one dashboard, filtered by `$cluster` and by its own variable (`$node`, `$waypoint`)."""

    def __init__(self, c: _Context, label: str):
        self.c = c
        self.label = label

    def _query(self, by: tuple[str, ...], fixed: dict[str, str]) -> Query:
        regex = {self.c.cluster: "$cluster", self.label: f"${self.label}", **fixed}
        return Query(by=(self.c.cluster, *by), window=RATE, filters=Filters(regex), cluster_label=self.c.cluster)

    def rate(self, source: Source, by: tuple[str, ...] = (), facet: str | None = None, total: bool = False,
             **fixed: str) -> str:
        """Per second (or, `total`, in the dashboard's time range) by `by`; `fixed` filters normalized labels."""
        query = self._query(by, fixed)
        if total:
            query = replace(query, window="$__range")
        return promql.rate((source,), query, facet, self.c.extra, func="increase" if total else "rate")

    def gauge(self, source: Source, by: tuple[str, ...] = (), aggregation: str = "sum", **fixed: str) -> str:
        return promql.gauge((source,), self._query(by, fixed), aggregation, self.c.extra)

    def quantile(self, source: Source, quantile: float, by: tuple[str, ...] = ()) -> str:
        return promql.histogram_quantile(quantile, source, self._query(by, {}), self.c.extra)

    def variable(self, source: Source) -> Variable:
        chosen = promql.selector(source, Filters({self.c.cluster: "$cluster"}), extra=self.c.extra.get(source.origin, ""),
                                 cluster_label=self.c.cluster)
        return Variable(self.label, self.label.capitalize(), f"label_values({chosen}, {self.label})")

    def cluster_variable(self, source: Source) -> Variable:
        chosen = promql.selector(source, extra=self.c.extra.get(source.origin, ""), cluster_label=self.c.cluster)
        return Variable("cluster", "Cluster", f"label_values({chosen}, {self.c.cluster})")


def _stat(title: str, expr: str, unit: str, description: str = "", **kw) -> Panel:
    """A one-query stat tile, sized as the other dashboards' tiles."""
    return traffic_stat(title, (Q(expr),), unit, description, **kw)


# --- ztunnel -----------------------------------------------------------------------------------
def _ztunnel(c: _Context) -> tuple[str, bytes]:
    s = _Scope(c, z.NODE)
    inbound = dict(reporter="destination")  # the server's ztunnel: denials, the client's security
    node = (z.NODE,)
    opened = s.rate(z.OPENED, **inbound)
    glance = (
        _stat("ztunnels up", s.gauge(a.ZTUNNEL_UP), "short", "ztunnels answering their scrape (one per node)."),
        _stat("ztunnels down", promql.or_value(f"count({s.gauge(a.ZTUNNEL_UP, node)} == 0)", 0), "short",
              "Nodes whose ztunnel does not answer: the ambient pods of those nodes are unreachable.",
              thresholds=((None, "green"), (1, "red"))),
        _stat("Connections accepted", _total(opened), "cps", "Connections per second the ztunnels accepted for their pods."),
        _stat("Inbound mTLS share", promql.ratio_of_sums(s.rate(z.OPENED, facet="mtls", **inbound), opened, 1), "percentunit",
              "Share of accepted connections that came over mutual TLS (HBONE); the rest came in plaintext "
              "(`connection_security_policy=\"unknown\"`: ztunnel never writes `none`).", thresholds=GOOD_HIGH),
        _stat("Failed connections", _total(s.rate(z.CLOSED, facet="failed")), "cps",
              "Connections closed with a response flag (DENY, CONNECT, TLS_FAILURE, NETWORK_POLICY, IDENTITY_ERROR...), "
              "as the ztunnel of either side saw them.", thresholds=BAD_HIGH),
        _stat("L4 authorization denials", _total(s.rate(z.CLOSED, facet="denied", **inbound)), "cps",
              "Connections an AuthorizationPolicy refused at the destination's ztunnel (response flag DENY): the only "
              "place an L4 denial shows.", thresholds=BAD_HIGH),
    )
    health = (
        Panel("ztunnel up by node", "timeseries", (Q(s.gauge(a.ZTUNNEL_UP, node), NODE_LEGEND),), min_value=0, max_value=1,
              description="1 while the node's ztunnel answers its scrape."),
        Panel("ztunnel versions by node", "table", (Q(s.gauge(a.ZTUNNEL_VERSION, node + ("version",), "count"), instant=True),),
              description="Istio version (the `tag` of istio_build) each node's ztunnel runs."),
    )
    by_side = node + ("reporter",)
    side_legend = "{{node}} {{reporter}}"
    about_sides = ("`destination`: connections to the node's pods, counted by their ztunnel; `source`: connections from them. "
                   "A connection between two ambient pods is counted once on each side.")
    connections = (
        Panel("Connections opened by node", "timeseries", (Q(s.rate(z.OPENED, by_side), side_legend),), unit="cps",
              description=about_sides),
        Panel("Connections closed by node", "timeseries", (Q(s.rate(z.CLOSED, by_side), side_legend),), unit="cps",
              description=about_sides),
        Panel("Open sockets by node", "timeseries", (Q(s.gauge(a.ZTUNNEL_SOCKETS_OPEN, by_side), side_legend),),
              description="Sockets the ztunnel holds open now (istio_tcp_sockets_open, ztunnel 1.29 and later)."),
        Panel("Bytes in and out by node", "timeseries",
              (Q(s.rate(z.RECEIVED_BYTES, node, **inbound), "{{node}} in"), Q(s.rate(z.SENT_BYTES, node, **inbound), "{{node}} out")),
              unit="Bps", description="Bytes the node's pods received from their clients (in) and answered (out)."),
        Panel("Connections accepted by destination", "timeseries",
              (Q(s.rate(z.OPENED, node + signals.WORKLOAD, **inbound), WORKLOAD_LEGEND),), unit="cps"),
    )
    flags = node + ("response_flags", "reporter")
    failures = (
        Panel("Failed connections by response flag", "timeseries",
              (Q(s.rate(z.CLOSED, flags, facet="failed"), "{{node}} {{response_flags}} ({{reporter}})"),), unit="cps",
              description="DENY: an AuthorizationPolicy; CONNECT: the upstream failed; TLS_FAILURE: the handshake; "
                          "NETWORK_POLICY: HBONE (15008) timed out, maybe a NetworkPolicy; IDENTITY_ERROR: no "
                          "certificate for the workload. A refused inbound handshake is only logged, never counted."),
        Panel("L4 authorization denials by destination", "timeseries",
              (Q(s.rate(z.CLOSED, signals.WORKLOAD, facet="denied", **inbound), WORKLOAD_LEGEND),), unit="cps"),
        Panel("Failed connections by source and destination", "table",
              (Q(s.rate(z.CLOSED, ("response_flags",) + signals.WORKLOAD_EDGE, facet="failed", total=True, **inbound),
                 instant=True),),
              description="Connections refused or failed at the destination's ztunnel in the time range, by flag."),
    )
    security = (
        Panel("Inbound mTLS share by node", "timeseries",
              (Q(promql.ratio(s.rate(z.OPENED, node, facet="mtls", **inbound), s.rate(z.OPENED, node, **inbound)), NODE_LEGEND),),
              unit="percentunit", min_value=0, max_value=1),
        Panel("Plaintext connections by source and destination", "timeseries",
              (Q(s.rate(z.OPENED, signals.WORKLOAD_EDGE, facet="plaintext", **inbound), f"{CALLER_LEGEND} → {WORKLOAD_LEGEND}"),),
              unit="cps", description="Connections accepted without mutual TLS (`connection_security_policy=\"unknown\"`): "
                                      "from outside the mesh, admitted by PERMISSIVE mode."),
        Panel("Identity and TLS failures by node", "timeseries",
              (Q(s.rate(z.CLOSED, node + ("response_flags",), facet="identity"), "{{node}} {{response_flags}}"),),
              unit="cps", description=CERTIFICATES),
        Panel("Certificates signed by istiod", "timeseries",
              (Q(promql.rate((z.ISTIOD_CSRS,), Query(by=(c.cluster,), window=RATE, filters=c.filters(), cluster_label=c.cluster),
                             extra=c.extra), "requests"),
               Q(promql.or_value(c.live(signals.CERT_ISSUANCE_ERRORS, (c.cluster,)), 0), "errors")), unit="ops",
              description=CERTIFICATES),
    )
    by_reason = node + ("reason",)
    xds = (
        Panel("xDS connection terminations by node", "timeseries",
              (Q(s.rate(a.ZTUNNEL_XDS_TERMINATIONS, by_reason), "{{node}} {{reason}}"),), unit="ops",
              description="ztunnel's connection to istiod ended: ConnectionError and Error are failures, Reconnect and "
                          "Complete are routine. A ztunnel without xDS keeps serving its last configuration."),
        Panel("xDS messages by node and type", "timeseries",
              (Q(s.rate(z.XDS_MESSAGES, node + ("type",)), "{{node}} {{type}}"),), unit="ops",
              description="Configuration received from istiod: workloads and services (Address), policies (Authorization)."),
        Panel("xDS bytes by node and type", "timeseries",
              (Q(s.rate(z.XDS_BYTES, node + ("type",)), "{{node}} {{type}}"),), unit="Bps",
              description="Size of the configuration received from istiod: a steady high rate is a churning mesh."),
    )
    workloads = (
        Panel("Pods served by node", "timeseries",
              (Q(s.gauge(a.ZTUNNEL_PROXIES, node), "{{node}} active"), Q(s.gauge(a.ZTUNNEL_PENDING_PROXIES, node), "{{node}} pending")),
              description="Ambient pods whose network namespace the ztunnel serves (workload manager); pending ones wait "
                          "for their certificate or configuration."),
        Panel("Pods started and stopped by node", "timeseries",
              (Q(s.rate(z.PROXIES_STARTED, node), "{{node}} started"), Q(s.rate(z.PROXIES_STOPPED, node), "{{node}} stopped")),
              unit="ops"),
        Panel("DNS requests by node", "timeseries", (Q(s.rate(z.DNS_REQUESTS, node), NODE_LEGEND),), unit="reqps",
              description="DNS queries the ztunnel's DNS proxy answered (only with DNS capture on)."),
    )
    resources = (
        Panel("CPU by ztunnel pod", "timeseries", (Q(s.rate(a.ZTUNNEL_CPU, ("pod",)), "{{pod}}"),), unit="percentunit",
              description=f"CPU seconds per second of each ztunnel container. {KUBELET}"),
        Panel("Memory by ztunnel pod", "timeseries", (Q(s.gauge(a.ZTUNNEL_MEMORY, ("pod",)), "{{pod}}"),), unit="bytes",
              description=f"Working set of each ztunnel container. {KUBELET}"),
        Panel("Open file descriptors by node", "timeseries",
              (Q(promql.ratio(s.gauge(z.OPEN_FDS, node), s.gauge(z.MAX_FDS, node)), NODE_LEGEND),), unit="percentunit",
              min_value=0, max_value=1, description="Share of the process's file descriptor limit in use: each connection holds some."),
    )
    rows = (Row("ztunnels at a glance", glance), Row("ztunnels", health), Row("Connections", connections),
            Row("Failures", failures), Row("Transport security and identity", security), Row("xDS", xds),
            Row("Workload manager and DNS", workloads), Row("Resources", resources))
    return c.dashboard("ztunnel", "ztunnel", "Istio ambient mode's node proxies (ztunnel), per node: connections, "
                       "bytes, failures, mTLS, identity, xDS, resources.", (s.variable(a.ZTUNNEL_VERSION),), rows,
                       cluster_variable=s.cluster_variable(a.ZTUNNEL_VERSION))


# --- waypoint ----------------------------------------------------------------------------------
def _waypoint(c: _Context) -> tuple[str, bytes]:
    s = _Scope(c, z.WAYPOINT)
    waypoint = (z.WAYPOINT,)
    by_service = waypoint + signals.SERVICE
    requests, errors = s.rate(z.WAYPOINT_REQUESTS), s.rate(z.WAYPOINT_REQUESTS, facet="error")
    glance = (
        _stat("Requests", _total(requests), "reqps", "Requests per second the waypoints passed to their services."),
        _stat("Success ratio", _success_ratio(errors, requests), "percentunit", f"Share of requests that did not fail. {FAILED}",
              thresholds=GOOD_HIGH),
        _stat("p99 latency", promql.or_value(s.quantile(z.WAYPOINT_DURATION, 0.99), 0), "s"),
        _stat("RBAC denials", _total(s.rate(z.WAYPOINT_RBAC_DENIED)), "reqps",
              "Requests an AuthorizationPolicy bound to the waypoint refused (Envoy's RBAC filter, answered 403).",
              thresholds=BAD_HIGH),
        _stat("Waypoints up", s.gauge(z.WAYPOINT_UP), "short", "Waypoint pods answering their scrape."),
        _stat("Waypoints not live", promql.or_value(f"count({s.gauge(z.WAYPOINT_LIVE, waypoint + ('pod',))} == 0)", 0),
              "short", "Waypoint pods whose Envoy is initializing or draining.", thresholds=((None, "green"), (1, "red"))),
    )
    traffic = (
        Panel("Requests by destination service", "timeseries", (Q(s.rate(z.WAYPOINT_REQUESTS, by_service), SERVICE_LEGEND),),
              unit="reqps"),
        Panel("Requests by response code", "timeseries",
              (Q(s.rate(z.WAYPOINT_REQUESTS, waypoint + ("code",)), "{{waypoint}} {{code}}"),), unit="reqps"),
        Panel("Failure ratio by destination service", "timeseries",
              (Q(promql.ratio(s.rate(z.WAYPOINT_REQUESTS, by_service, facet="error"), s.rate(z.WAYPOINT_REQUESTS, by_service)),
                 SERVICE_LEGEND),), unit="percentunit", min_value=0, max_value=1, description=FAILED),
        Panel("Failed requests by destination service", "timeseries",
              (Q(s.rate(z.WAYPOINT_REQUESTS, by_service, facet="error"), SERVICE_LEGEND),), unit="reqps", description=FAILED),
        Panel("Latency by waypoint", "timeseries",
              tuple(Q(s.quantile(z.WAYPOINT_DURATION, q, waypoint), f"p{q * 100:g} {{{{waypoint}}}}") for q in (0.5, 0.9, 0.99)),
              unit="s"),
        Panel("p99 latency by destination service", "timeseries",
              (Q(s.quantile(z.WAYPOINT_DURATION, 0.99, by_service), SERVICE_LEGEND),), unit="s"),
    )
    edge = signals.EDGE
    authz = (
        Panel("RBAC denials by waypoint and port", "timeseries",
              (Q(s.rate(z.WAYPOINT_RBAC_DENIED, waypoint + ("port",)), "{{waypoint}} port {{port}}"),),
              unit="reqps", description="Envoy's RBAC filter of the waypoint, per service port it listens on (its stats "
                                        "name the port, not the service: per service, see the 403s)."),
        Panel("403 responses by source and destination", "timeseries",
              (Q(s.rate(z.WAYPOINT_REQUESTS, edge, facet="403"), f"{CALLER_LEGEND} → {SERVICE_LEGEND}"),), unit="reqps"),
        Panel("Denied pairs", "table", (Q(s.rate(z.WAYPOINT_REQUESTS, edge, facet="403", total=True), instant=True),),
              description="403 responses through the waypoints in the time range, by source and destination."),
    )
    per_pod = waypoint + ("namespace", "pod")
    pod_legend = "{{pod}}.{{namespace}}"
    health = (
        Panel("Waypoint pods up", "timeseries", (Q(s.gauge(z.WAYPOINT_UP, per_pod), pod_legend),), min_value=0, max_value=1),
        Panel("Liveness by pod", "timeseries", (Q(s.gauge(z.WAYPOINT_LIVE, per_pod), pod_legend),), min_value=0, max_value=1),
        Panel("Memory by pod", "timeseries", (Q(s.gauge(z.WAYPOINT_MEMORY, per_pod), pod_legend),), unit="bytes"),
        Panel("Connections by pod", "timeseries", (Q(s.gauge(z.WAYPOINT_CONNECTIONS, per_pod), pod_legend),)),
        Panel("Waypoint versions", "table", (Q(s.gauge(z.WAYPOINT_VERSIONS, per_pod + ("version",), "count"), instant=True),)),
    )
    rows = (Row("Waypoints at a glance", glance), Row("Requests through the waypoints", traffic),
            Row("Authorization", authz), Row("Waypoint proxies", health))
    return c.dashboard("waypoint", "Waypoints", "Istio ambient mode's L7 proxies (waypoints), per waypoint: requests, "
                       "failures, latency and RBAC denials by destination service, proxy health.",
                       (s.variable(z.WAYPOINT_VERSIONS),), rows, cluster_variable=s.cluster_variable(z.WAYPOINT_VERSIONS))


def render(cfg: Config, dialect: Dialect) -> dict[str, bytes]:
    if dialect.name not in AMBIENT_MESHES:
        return {}
    c = _Context(cfg, dialect)
    return dict(build(c) for build in (_ztunnel, _waypoint))
