"""Recording rules of Istio ambient's ztunnels, per node: whether each is scraped, and its xDS and
identity failures at the ztunnel alerts' window. Same naming and `mesh` label as
meshobs/recordings.py; a mesh without ztunnels records nothing here."""

from __future__ import annotations

from meshobs import signals
from meshobs.config import Config
from meshobs.meshes.base import Dialect
from meshobs.recordings import Family, Recorded, Rule, extra_matchers, per_cluster_query

NODE = ("node",)

ZTUNNEL_UP = Recorded("node", "mesh_ztunnel_up", "min")
xds_failures = Family("node_reason", "mesh_ztunnel_xds_failures", "rate")
identity_failures = Family("node_response_flags", "mesh_ztunnel_identity_failures", "rate")


def window(cfg: Config) -> str:
    return cfg.alerts.ztunnel.window


def rules(cfg: Config, dialect: Dialect) -> list[Rule]:
    if dialect.ztunnels is None:
        return []
    mesh = {"mesh": dialect.name}
    extra = extra_matchers(cfg, dialect)

    at = window(cfg)
    return [
        Rule(ZTUNNEL_UP.name, signals.ZTUNNEL_UP.expr(dialect, per_cluster_query(cfg, NODE, ""), extra=extra), mesh),
        Rule(xds_failures(at).name, signals.ZTUNNEL_XDS_FAILURES.expr(dialect, per_cluster_query(cfg, NODE + ("reason",), at), extra=extra), mesh),
        Rule(identity_failures(at).name,
             signals.ZTUNNEL_IDENTITY_FAILURES.expr(dialect, per_cluster_query(cfg, NODE + ("response_flags",), at), extra=extra), mesh),
    ]
