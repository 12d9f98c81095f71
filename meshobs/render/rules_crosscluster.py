"""Alerts on the way between clusters, rendered where the mesh reports the signal: a remote cluster
the mesh itself judges unreachable (Linkerd's service mirror probing a Link's gateway, Consul's
servers' peering health; Istio has no such number), and calls from one cluster to another failing
while each cluster's own alerts may stay quiet (failover broken, a gateway refusing, a peering
serving stale endpoints). Both read the recordings of meshobs/recordings_crosscluster.py."""

from __future__ import annotations

from meshobs import cluster_signals as cs
from meshobs import promql
from meshobs import recordings_crosscluster as rx
from meshobs.config import Config, duration_seconds
from meshobs.meshes.base import Dialect
from meshobs.meshes.crosscluster import DESTINATION_CLUSTER, SOURCE_CLUSTER
from meshobs.render.rules import Alert

ALERT_NAMES = (
    "MeshRemoteClusterUnreachable",  # only where the mesh judges a remote cluster's reachability itself
    "MeshCrossClusterErrors",
)

_SOURCE = "{{ $labels.source_cluster }}"
_DESTINATION = "{{ $labels.destination_cluster }}"


def _unreachable(cfg: Config, dialect: Dialect) -> list[Alert]:
    if not cs.REMOTE_UP.available(dialect):
        return []
    x = cfg.alerts.cross_cluster
    # A remote cluster the mesh stops knowing of (a Link or a peering removed) loses its series: not an outage.
    here = f"{{{{ $labels.{cfg.cluster_label} }}}}"
    return [Alert(
        "MeshRemoteClusterUnreachable", f"{rx.REMOTE_UP.ref(dialect.name)} < 1", x.unreachable_for, x.unreachable_severity,
        f"{dialect.title}: cluster {here} cannot reach cluster {_DESTINATION}",
        f"{dialect.title} in cluster {here} has judged cluster {_DESTINATION} unreachable for {x.unreachable_for} "
        "(its multicluster gateway does not answer the mesh's probes, or its peering is unhealthy): calls to the "
        "services it exports fail or fail over.",
    )]


def _errors(cfg: Config, dialect: Dialect) -> list[Alert]:
    if not cs.ERRORS.available(dialect):
        return []
    x = cfg.alerts.cross_cluster
    mesh = dialect.name
    ratio = rx.error_ratio(x.window).ref(mesh)
    assert dialect.cross_cluster is not None
    if not dialect.cross_cluster.only_remote:
        # local calls are recorded as pairs of one cluster: MeshHighErrorRate judges those
        ratio = promql.labels_differ(ratio, SOURCE_CLUSTER, DESTINATION_CLUSTER)
    return [Alert(
        "MeshCrossClusterErrors",
        promql.ratio_with_volume(ratio, rx.requests(x.window).ref(mesh), x.error_ratio, duration_seconds(x.window),
                                 x.min_requests),
        x.errors_for, x.errors_severity,
        f"{dialect.title}: calls from cluster {_SOURCE} to cluster {_DESTINATION} fail",
        f"{{{{ $value | humanizePercentage }}}} of the requests from cluster {_SOURCE} to cluster {_DESTINATION} failed "
        f"(5xx, failed gRPC calls) over the last {x.window} (threshold {x.error_ratio:.0%}, at least {x.min_requests:g} "
        "requests).",
    )]


def alerts(cfg: Config, dialect: Dialect) -> list[Alert]:
    return _unreachable(cfg, dialect) + _errors(cfg, dialect)
