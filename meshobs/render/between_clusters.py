"""Panels of traffic between clusters, one definition for the clusters, overview and service
dashboards: requests, failure ratio, mTLS share and latency per (caller cluster → destination
cluster) pair. The clusters and overview dashboards read the recorded pairs and reachability
(meshobs/recordings_crosscluster.py), not the raw series, so a store of many clusters does not
re-aggregate them at every refresh; the service dashboard's callers (finer than a pair) and the
gateway probes' latency read the dialect's cross-cluster sources (meshobs/cluster_signals.py).

An end of the pair the mesh does not name is the reporting proxy's own cluster, the store's
cluster label: the legend shows that label there. On the service dashboard the callers of the
selected service are shown from every cluster where the callers' proxies count them (Linkerd,
Consul: the service is named alike in every cluster), from the selected clusters where the
destination's proxy counts them (Istio).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshobs import cluster_signals as cs
from meshobs import promql
from meshobs import recordings_crosscluster as rx
from meshobs.meshes.crosscluster import DESTINATION_CLUSTER, ENDS, SOURCE_CLUSTER
from meshobs.promql import Filters, Query
from meshobs.render.grafana import RATE, Panel, Row
from meshobs.render.grafana import Query as Q
from meshobs.signals import Signal

if TYPE_CHECKING:
    from meshobs.render.dashboards import _Context

TITLE = "Traffic between clusters"


def reported(c: "_Context") -> bool:
    return cs.REQUESTS.available(c.dialect)


def _end(c: "_Context", end: str) -> str:
    """The label holding one end's cluster: the mesh's own, else the store's (the reporter's cluster)."""
    assert c.dialect.cross_cluster is not None
    return end if c.dialect.cross_cluster.names(end) else c.cluster


def pair_legend(c: "_Context") -> str:
    return f"{{{{{_end(c, SOURCE_CLUSTER)}}}}} → {{{{{_end(c, DESTINATION_CLUSTER)}}}}}"


def pair_labels(c: "_Context", *more: str) -> tuple[str, ...]:
    return (c.cluster, *ENDS, *more)


def _live(c: "_Context", signal: Signal, by: tuple[str, ...], regex: dict[str, str], quantile: float | None = None) -> str:
    query = Query(by=by, window=RATE, filters=Filters(regex=regex), cluster_label=c.cluster)
    return signal.expr(c.dialect, query, quantile=quantile, extra=c.extra)


def _about(c: "_Context") -> str:
    cross = c.dialect.cross_cluster
    assert cross is not None
    scope = "calls to other clusters only" if cross.only_remote else "pairs of one cluster are local calls"
    return f"{cross.about}; {scope}."


def _pair_panels(c: "_Context", pairs: dict[str, str], legend: str, what: str) -> tuple[Panel, ...]:
    """The pair panels from their queries: "requests", "failure" and, where the mesh has them, "mtls" and "latency"."""
    about = _about(c)
    panels = [
        Panel(f"Requests {what}", "timeseries", (Q(pairs["requests"], legend),), unit="reqps", description=about),
        Panel(f"Failure ratio {what}", "timeseries", (Q(pairs["failure"], legend),),
              unit="percentunit", max_value=1, min_value=0, description=about),
    ]
    if "mtls" in pairs:
        panels.append(Panel(f"mTLS share {what}", "timeseries", (Q(pairs["mtls"], legend),),
                            unit="percentunit", max_value=1, min_value=0, description=about))
    if "latency" in pairs:
        panels.append(Panel(f"p{c.cfg.alerts.latency.quantile * 100:g} latency {what}", "timeseries",
                            (Q(pairs["latency"], legend),), unit="s", description=about))
    return tuple(panels)


def live_pairs(c: "_Context", by: tuple[str, ...], regex: dict[str, str]) -> dict[str, str]:
    """The pair queries from the mesh's own series, grouped by `by` (finer than the recorded pairs)."""
    requests = _live(c, cs.REQUESTS, by, regex)
    pairs = {"requests": requests, "failure": promql.ratio(_live(c, cs.ERRORS, by, regex), requests)}
    if cs.MTLS.available(c.dialect):
        pairs["mtls"] = promql.ratio(_live(c, cs.MTLS, by, regex), requests)
    if cs.DURATION.available(c.dialect):
        pairs["latency"] = _live(c, cs.DURATION, by, regex, quantile=c.cfg.alerts.latency.quantile)
    return pairs


def recorded_pairs(c: "_Context") -> dict[str, str]:
    """The pair queries from the recorded pairs (meshobs/recordings_crosscluster.py) of the selected clusters."""
    window = c.traffic_window
    requests = c.ref(rx.requests(window))
    pairs = {"requests": requests, "failure": c.ref(rx.error_ratio(window))}
    if cs.MTLS.available(c.dialect):
        pairs["mtls"] = promql.ratio(c.ref(rx.mtls_requests(window)), requests)
    if cs.DURATION.available(c.dialect):
        pairs["latency"] = c.ref(rx.latency(rx.latency_window(c.cfg)), {"quantile": f"{c.cfg.alerts.latency.quantile:g}"})
    return pairs


def _gateway_panels(c: "_Context") -> tuple[Panel, ...]:
    """Whether each remote cluster is reachable (gateway probes, peerings), from the cluster that reaches out."""
    by = (c.cluster, DESTINATION_CLUSTER)
    legend = f"{{{{{c.cluster}}}}} → {{{{{DESTINATION_CLUSTER}}}}}"
    panels = []
    if cs.REMOTE_UP.available(c.dialect):
        panels.append(Panel("Remote clusters reachable", "timeseries", (Q(c.ref(rx.REMOTE_UP), legend),),
                            max_value=1, min_value=0, description=cs.REMOTE_UP.description + "."))
    if cs.GATEWAY_PROBE_DURATION.available(c.dialect):
        panels.append(Panel("Gateway probe p99 latency", "timeseries",
                            (Q(c.live(cs.GATEWAY_PROBE_DURATION, by, quantile=0.99), legend),), unit="s",
                            description=cs.GATEWAY_PROBE_DURATION.description + "."))
    return tuple(panels)


def rows(c: "_Context", gateways: bool = False) -> tuple[Row, ...]:
    """The row for the clusters and overview dashboards: every pair measured in the selected clusters
    (and, with `gateways`, the mesh's probes of the remote gateways)."""
    if not reported(c):
        return ()
    panels = _pair_panels(c, recorded_pairs(c), pair_legend(c), "by cluster pair")
    return (Row(TITLE, panels + (_gateway_panels(c) if gateways else ())),)


def service_rows(c: "_Context", sel: dict[str, str]) -> tuple[Row, ...]:
    """Callers of one service by their cluster, wherever they are measured: the callee's end is `$cluster`."""
    if not reported(c):
        return ()
    regex = {label: f"${var}" for label, var in sel.items()}
    # counted at the destination: in its own (selected) store cluster; counted by the callers: in
    # theirs, whichever they are: the legend's destination end says which cluster's service they reached
    if c.dialect.cross_cluster.reporter == "destination":  # type: ignore[union-attr]
        regex[c.cluster] = "$cluster"
    legend = f"{{{{source_workload}}}}.{{{{source_namespace}}}} ({pair_legend(c)})"
    pairs = live_pairs(c, pair_labels(c, "source_namespace", "source_workload"), regex)
    return (Row("Callers by cluster", _pair_panels(c, pairs, legend, "by caller and cluster")),)
