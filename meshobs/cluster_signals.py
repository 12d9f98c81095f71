"""Signals of calls between clusters, answered by a dialect's `cross_cluster` sources
(meshobs/meshes/crosscluster.py); a mesh without them answers none."""

from __future__ import annotations

from meshobs.signals import Signal, at_path

_requests = at_path("cross_cluster.requests")

REQUESTS = Signal("cross_cluster_requests", "Requests between clusters", "reqps", "rate", _requests,
                  description="HTTP/gRPC requests by caller cluster and destination cluster")
ERRORS = Signal("cross_cluster_errors", "Failed requests between clusters", "reqps", "rate", _requests, facet="error",
                description="failed requests (5xx, failed gRPC) by caller cluster and destination cluster")
MTLS = Signal("cross_cluster_mtls", "mTLS requests between clusters", "reqps", "rate", _requests, facet="mtls",
              description="requests over mutual TLS by caller cluster and destination cluster")
DURATION = Signal("cross_cluster_duration", "Latency between clusters", "s", "quantile", at_path("cross_cluster.duration"),
                  description="time to answer a request, by caller cluster and destination cluster")
REMOTE_UP = Signal("remote_up", "Remote clusters reachable", "short", "gauge_min", at_path("cross_cluster.remote_up"),
                   description="1 while the mesh reaches a remote cluster (its gateway answers probes, its peering "
                               "is healthy), by destination cluster")
GATEWAY_PROBE_DURATION = Signal("gateway_probe_duration", "Gateway probe latency", "s", "quantile",
                                at_path("cross_cluster.gateway_probe_duration"),
                                description="time the mesh's probes of a remote cluster's gateway take, by destination cluster")
