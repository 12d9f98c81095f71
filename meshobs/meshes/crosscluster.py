"""What a mesh reports about calls between clusters: which series count them, and which end's
cluster each series names.

Normalized labels `source_cluster` (the caller's cluster) and `destination_cluster` (the callee's)
are mapped from the mesh's own labels where it has them, so a pair is named in the mesh's own
cluster names (Istio's `clusterName`, a Linkerd Link's target cluster, a Consul datacenter or
peer). An end the mesh does not name is the cluster whose store label the series carries: the
reporting proxy's own cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshobs.promql import Source

SOURCE_CLUSTER = "source_cluster"
DESTINATION_CLUSTER = "destination_cluster"
ENDS = (SOURCE_CLUSTER, DESTINATION_CLUSTER)


@dataclass(frozen=True)
class CrossCluster:
    """Calls between clusters as one mesh's proxies count them.

    - `requests`: HTTP/gRPC requests with facets "error" and, where the proxy labels it, "mtls".
    - `duration`: their latency histogram buckets (seconds after scale), or None.
    - `reporter`: "caller" or "destination", the proxy that counts (and whose cluster the store's
      cluster label names when the mesh does not name that end itself).
    - `only_remote`: the series count calls to other clusters only (not local ones too).
    - `about`: how the mesh knows, for panel descriptions.
    - `remote_up`: 1 while the mesh reaches a remote cluster (its gateway answers the mesh's
      probes, its peering is healthy), by `destination_cluster`; None where the mesh has no such number.
    - `gateway_probe_duration`: those probes' latency histogram buckets, or None.
    """

    requests: Source
    duration: Source | None
    reporter: str
    only_remote: bool
    about: str
    remote_up: Source | None = None
    gateway_probe_duration: Source | None = None

    def sources(self) -> tuple[Source, ...]:
        return tuple(s for s in (self.requests, self.duration, self.remote_up, self.gateway_probe_duration) if s)

    def names(self, end: str) -> bool:
        """Whether the mesh's series name this end's cluster themselves."""
        return end in self.requests.labels or end in self.requests.constant_labels
