"""The multi-cluster dashboard per mesh, `dashboards/<mesh>/clusters.json`: each cluster's health
side by side (one tile / one line per cluster, from the per-cluster recordings), and — where the
mesh's request series say which cluster the caller is in — traffic between clusters: requests,
failure ratio, mTLS share and latency per (caller cluster → destination cluster) pair
(meshobs/render/between_clusters.py: Istio's cluster labels, Linkerd's multicluster gateways,
Consul's datacenters and peers).
"""

from __future__ import annotations

from meshobs import promql
from meshobs import recordings as rec
from meshobs.config import Config
from meshobs.meshes.base import Dialect
from meshobs.render import between_clusters
from meshobs.render.dashboards import _Context
from meshobs.render.grafana import BAD_HIGH, GOOD_HIGH, Panel, Row
from meshobs.render.grafana import Query as Q


def _by_cluster(c: _Context, operation: str, expr: str) -> str:
    return f"{operation} by ({c.cluster}) ({expr})"


def _share(c: _Context, part: str, whole: str) -> str:
    """Per cluster, the share of `whole` that is `part`; a service without `part` series counts 0."""
    return promql.ratio(_by_cluster(c, "sum", part), _by_cluster(c, "sum", whole))


def _side_by_side(c: _Context) -> tuple[Row, Row]:
    w, secure = c.traffic_window, c.cfg.alerts.plaintext.window
    requests, errors = c.ref(rec.requests(w)), c.ref(rec.request_errors(w))
    workloads, plaintext = c.ref(rec.workload_requests(secure)), c.ref(rec.plaintext(secure))
    legend = f"{{{{{c.cluster}}}}}"
    # a cluster without denials, failures or alerts shows 0, not nothing
    zero = f"{_by_cluster(c, 'sum', requests)} * 0"
    denials = f"{_by_cluster(c, 'sum', c.ref(rec.authz_denied(c.cfg.alerts.unauthorized_burst.window)))} or {zero}"
    failures = f"{_by_cluster(c, 'sum', c.ref(rec.tls_failures(c.cfg.alerts.mtls_failure.window)))} or {zero}"
    alerts = (f'count by ({c.cluster}) (ALERTS{{alertstate="firing", mesh="{c.mesh}", {c.cluster}=~"$cluster"}})'
              f" or {zero}")
    tiles = (
        Panel("Requests", "stat", (Q(_by_cluster(c, "sum", requests), legend),), unit="reqps", width=8, height=5,
              description="Requests per second received in each cluster."),
        Panel("Success ratio", "stat", (Q(f"1 - ({_share(c, errors, requests)})", legend),), unit="percentunit",
              width=8, height=5, thresholds=GOOD_HIGH, description="Share of each cluster's requests not answered with 5xx."),
        Panel("Plaintext share", "stat", (Q(_share(c, plaintext, workloads), legend),), unit="percentunit",
              width=8, height=5, thresholds=BAD_HIGH, description="Share of each cluster's requests served without mutual TLS."),
        Panel("Authorization denials", "stat", (Q(denials, legend),), unit="reqps", width=8, height=5,
              thresholds=BAD_HIGH, description="Requests refused by authorization policies, per cluster."),
        Panel("TLS handshake failures", "stat", (Q(failures, legend),), unit="ops", width=8, height=5,
              thresholds=BAD_HIGH, description="Failed mTLS handshakes per second, per cluster."),
        Panel("Firing alerts", "stat",
              (Q(alerts, legend),),
              width=8, height=5, thresholds=((None, "green"), (1, "red")), description="meshobs alerts firing, per cluster."),
    )
    latency = c.ref(rec.latency(c.cfg.alerts.latency.window), {"quantile": f"{c.cfg.alerts.latency.quantile:g}"})
    lines = (
        Panel("Requests by cluster", "timeseries", (Q(_by_cluster(c, "sum", requests), legend),), unit="reqps"),
        Panel("5xx ratio by cluster", "timeseries", (Q(_share(c, errors, requests), legend),), unit="percentunit"),
        Panel("Plaintext share by cluster", "timeseries", (Q(_share(c, plaintext, workloads), legend),),
              unit="percentunit", max_value=1, min_value=0),
        Panel(f"Slowest service latency (p{c.cfg.alerts.latency.quantile * 100:g}) by cluster", "timeseries",
              (Q(_by_cluster(c, "max", latency), legend),), unit="s",
              description="The highest per-service latency quantile in each cluster (quantiles do not add up)."),
    )
    return Row("Clusters side by side", tiles), Row("Clusters over time", lines)


def render(cfg: Config, dialect: Dialect) -> dict[str, bytes]:
    c = _Context(cfg, dialect)
    rows = _side_by_side(c) + between_clusters.rows(c, gateways=True)
    path, content = c.dashboard("clusters", "Clusters", "Each cluster's health side by side, and traffic between clusters.",
                                (), rows)
    return {path: content}
