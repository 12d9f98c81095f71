"""Alerts on Istio ambient's ztunnels, per node, rendered where the mesh has them: a ztunnel down
(every ambient pod of its node is unreachable: it carries all their traffic), its xDS stream to
istiod failing (it keeps the last configuration: new pods, policies and endpoints do not reach it),
and connections it closes for identity reasons (a certificate it cannot get, a TLS handshake that
fails, a revoked certificate). The alerts of every mesh (meshobs/render/rules.py) cover the
ambient workloads themselves."""

from __future__ import annotations

from meshobs import promql
from meshobs import recordings_ambient as ra
from meshobs.config import Config
from meshobs.meshes.ambient import IDENTITY_FLAGS, XDS_FAILURE_REASONS
from meshobs.meshes.base import Dialect
from meshobs.render.rules import VALUE, Alert

ALERT_NAMES = (
    "MeshZtunnelDown",
    "MeshZtunnelXdsFailures",
    "MeshZtunnelIdentityFailures",
)

_NODE = "{{ $labels.node }}"


def alerts(cfg: Config, dialect: Dialect) -> list[Alert]:
    if dialect.ztunnels is None:
        return []
    z = cfg.alerts.ztunnel
    mesh = dialect.name
    up = ra.ZTUNNEL_UP.ref(mesh)
    unreachable = "every ambient pod of the node is unreachable (ztunnel carries all their traffic)"
    window = ra.window(cfg)
    return [
        Alert(
            "MeshZtunnelDown", f"{up} == 0", z.down_for, z.down_severity,
            f"{dialect.title}: the ztunnel of node {_NODE} is down",
            f"Prometheus has failed to scrape the ztunnel of node {_NODE} for {z.down_for}: {unreachable}.",
            (("basis", "down"),),
        ),
        Alert(
            "MeshZtunnelDown", promql.gone(up, z.gone_within), z.down_for, z.down_severity,
            f"{dialect.title}: the ztunnel of node {_NODE} is gone",
            f"Node {_NODE} had a ztunnel in the last {z.gone_within} and has none now: {unreachable}, "
            "unless the node itself was removed.",
            (("basis", "gone"),),
        ),
        Alert(
            "MeshZtunnelXdsFailures",
            f"{ra.xds_failures(window).ref(mesh)} > {z.min_xds_failures_per_second:g}", z.for_, z.severity,
            f"{dialect.title}: the ztunnel of node {_NODE} loses its xDS stream to istiod",
            f"The ztunnel of node {_NODE} ended {VALUE} xDS streams/s to istiod with {{{{ $labels.reason }}}} over the "
            f"last {window} (failures: {', '.join(XDS_FAILURE_REASONS)}): it keeps its last configuration, so new pods, "
            "policies and endpoints do not reach it.",
        ),
        Alert(
            "MeshZtunnelIdentityFailures",
            f"{ra.identity_failures(window).ref(mesh)} > {z.min_identity_failures_per_second:g}", z.for_, z.severity,
            f"{dialect.title}: the ztunnel of node {_NODE} fails connections for identity reasons",
            f"The ztunnel of node {_NODE} closed {VALUE} connections/s with {{{{ $labels.response_flags }}}} over the "
            f"last {window} (one of {', '.join(IDENTITY_FLAGS)}): it cannot get or present a workload certificate, "
            "or a peer's is refused.",
        ),
    ]
