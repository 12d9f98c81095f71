"""Recording rules of calls between clusters (meshobs/cluster_signals.py): requests, failures and
mTLS per (cluster label, source_cluster, destination_cluster) pair, their error ratio and latency
quantiles, and each remote cluster's reachability as the mesh itself judges it. Same naming and
`mesh` label as meshobs/recordings.py; a mesh without a cross-cluster signal records nothing of it.

Both ends are always set on the recorded pairs: an end the mesh does not name itself (Linkerd's
caller) is the reporting proxy's own cluster, copied from the store's cluster label, so that a
roll-up across clusters (meshobs/render/global_rules.py) still tells the pairs apart.
"""

from __future__ import annotations

from meshobs import cluster_signals as cs
from meshobs import promql
from meshobs.config import Config, duration_seconds
from meshobs.meshes.base import Dialect
from meshobs.meshes.crosscluster import DESTINATION_CLUSTER, ENDS
from meshobs.recordings import Family, Recorded, Rule, dashboard_window, extra_matchers, per_cluster_query, quantiles
from meshobs.signals import Signal

PAIR = "source_cluster_destination_cluster"

requests = Family(PAIR, "mesh_cross_cluster_requests", "rate")
request_errors = Family(PAIR, "mesh_cross_cluster_request_errors", "rate")
error_ratio = Family(PAIR, "mesh_cross_cluster_request_errors", "ratio_rate")
mtls_requests = Family(PAIR, "mesh_cross_cluster_requests_mtls", "rate")
latency = Family(PAIR, "mesh_cross_cluster_request_duration_seconds", "histogram_quantile_rate")
REMOTE_UP = Recorded(DESTINATION_CLUSTER, "mesh_remote_cluster_up", "min")


def windows(cfg: Config) -> list[str]:
    """The dashboards' traffic window (their panels of pairs read it) and the cross-cluster alert's."""
    return sorted({dashboard_window(cfg), cfg.alerts.cross_cluster.window}, key=duration_seconds)


def latency_window(cfg: Config) -> str:
    return cfg.alerts.latency.window


def _both_ends(cfg: Config, dialect: Dialect, expr: str) -> str:
    """`expr` with each end the mesh does not name set to the store's cluster label (the reporter's cluster)."""
    cross = dialect.cross_cluster
    assert cross is not None
    return promql.copy_labels(expr, {end: cfg.cluster_label for end in ENDS if not cross.names(end)})


def rules(cfg: Config, dialect: Dialect) -> list[Rule]:
    if not cs.REQUESTS.available(dialect):
        return []
    mesh = {"mesh": dialect.name}
    name = dialect.name
    extra = extra_matchers(cfg, dialect)

    def recorded(signal: Signal, at: str, quantile: float | None = None) -> str:
        query = per_cluster_query(cfg, ENDS, at)
        return _both_ends(cfg, dialect, signal.expr(dialect, query, quantile=quantile, extra=extra))

    result = []
    for window in windows(cfg):
        result.append(Rule(requests(window).name, recorded(cs.REQUESTS, window), mesh))
        result.append(Rule(request_errors(window).name, recorded(cs.ERRORS, window), mesh))
        result.append(Rule(error_ratio(window).name,
                           promql.ratio(request_errors(window).ref(name), requests(window).ref(name)), mesh))
        if cs.MTLS.available(dialect):
            result.append(Rule(mtls_requests(window).name, recorded(cs.MTLS, window), mesh))
    if cs.DURATION.available(dialect):
        window = latency_window(cfg)
        for q in quantiles(cfg):
            result.append(Rule(latency(window).name, recorded(cs.DURATION, window, quantile=q), dict(mesh, quantile=f"{q:g}")))
    if cs.REMOTE_UP.available(dialect):
        query = per_cluster_query(cfg, (DESTINATION_CLUSTER,), "")
        result.append(Rule(REMOTE_UP.name, cs.REMOTE_UP.expr(dialect, query, extra=extra), mesh))
    return result
