"""Signals of calls between clusters, answered by a dialect's `cross_cluster` sources
(meshobs/meshes/crosscluster.py); a mesh without them answers none."""

from __future__ import annotations

from meshobs.meshes.base import Dialect
from meshobs.promql import Source
from meshobs.signals import Signal


def _field(field: str):
    """The dialect's `cross_cluster.<field>` source, where it has one."""
    def sources(dialect: Dialect) -> tuple[Source, ...]:
        source = getattr(dialect.cross_cluster, field) if dialect.cross_cluster else None
        return (source,) if source else ()

    return sources


_requests = _field("requests")


REQUESTS = Signal("cross_cluster_requests", "Requests between clusters", "reqps", "rate", _requests,
                  description="HTTP/gRPC requests by caller cluster and destination cluster")
ERRORS = Signal("cross_cluster_errors", "Failed requests between clusters", "reqps", "rate", _requests, facet="error",
                description="failed requests (5xx, failed gRPC) by caller cluster and destination cluster")
MTLS = Signal("cross_cluster_mtls", "mTLS requests between clusters", "reqps", "rate", _requests, facet="mtls",
              description="requests over mutual TLS by caller cluster and destination cluster")
DURATION = Signal("cross_cluster_duration", "Latency between clusters", "s", "quantile", _field("duration"),
                  description="time to answer a request, by caller cluster and destination cluster")
REMOTE_UP = Signal("remote_up", "Remote clusters reachable", "short", "gauge_min", _field("remote_up"),
                   description="1 while the mesh reaches a remote cluster (its gateway answers probes, its peering "
                               "is healthy), by destination cluster")
GATEWAY_PROBE_DURATION = Signal("gateway_probe_duration", "Gateway probe latency", "s", "quantile",
                                _field("gateway_probe_duration"),
                                description="time the mesh's probes of a remote cluster's gateway take, by destination cluster")
