"""Where a mesh keeps the numbers beyond HTTP at the destination: TCP, the caller's side of every
call, sizes and gRPC status, the proxies themselves, and the control plane in depth.

Each group is a dataclass of `Source | None`; None means the mesh does not report that number, and
`unavailable` says why (rendered into docs/parity.md and `meshobs check`'s view of the dialect).
Normalized labels, besides those of `meshobs.signals`: `namespace`/`workload` for a proxy's own
numbers (the workload whose sidecar it is), `grpc_status`, `type` (xDS type), `version`, `component`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterator, Mapping

from meshobs.promql import Cut, Source

# A pod name with its owner's generated suffix cut off. Kubernetes draws ReplicaSet hashes and pod
# suffixes from an alphabet without vowels (so no word is mistaken for one): Deployment and Argo
# Rollout pods are `name-<hash>-<5>`, CronJob pods `name-<minutes since epoch>-<5>`, DaemonSet and
# Job pods `name-<5>`, StatefulSet pods `name-N`.
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
POD_OWNER = Cut(
    "pod", (f"(.+?)(?:-{_SAFE}{{5,10}}-{_SAFE}{{5}}|-[0-9]{{8,}}-{_SAFE}{{5}}|-{_SAFE}{{5}}|-[0-9]+)",), "(?:{value})-[a-z0-9-]+"
)


@dataclass(frozen=True)
class _Group:
    unavailable: Mapping[str, str] = field(default_factory=dict)  # field name -> why the mesh lacks it

    def sources(self) -> Iterator[Source]:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Source):
                yield value
            elif isinstance(value, tuple):
                yield from (v for v in value if isinstance(v, Source))

    def reason(self, name: str) -> str:
        return self.unavailable.get(name, "not reported by this mesh")


@dataclass(frozen=True)
class Tcp(_Group):
    """TCP at the destination's proxy (counters unless said), and on the caller's side."""

    opened: Source | None = None  # facet "mtls" where the mesh labels the connection's security
    closed: Source | None = None
    active: Source | None = None  # gauge
    sent_bytes: Source | None = None  # to the peer that opened the connection
    received_bytes: Source | None = None
    client_sent_bytes: Source | None = None  # caller side, by source workload and destination service
    client_received_bytes: Source | None = None
    connect_failures: Source | None = None  # caller side: connections that failed or closed with an error


@dataclass(frozen=True)
class Client(_Group):
    """The caller's side of HTTP/gRPC calls: source and destination labels, facets "5xx", "4xx".
    Several sources of requests are views of the same calls (a caller's proxy, the waypoint it
    calls through): per label set the largest is taken, never the sum."""

    requests: Source | tuple[Source, ...] | None = None
    duration: Source | None = None  # histogram buckets, seconds after scale


@dataclass(frozen=True)
class Http(_Group):
    """More of HTTP at the destination: 4xx, gRPC status, sizes."""

    client_errors: tuple[str, ...] = ()  # native matchers of 4xx responses on `Dialect.requests`
    inbound_duration: Source | None = None  # latency buckets at the destination workload, seconds after scale
    grpc: Source | None = None  # requests of gRPC calls with a `grpc_status` label
    request_bytes: Source | None = None  # histogram buckets
    response_bytes: Source | None = None
    routes: Source | None = None  # requests at the destination with a `route` label, facet "5xx"


@dataclass(frozen=True)
class ProxyHealth(_Group):
    """The sidecar proxies themselves, by `namespace` and `workload`; upstream health by caller."""

    live: Source | None = None  # gauge, 1 while the proxy serves
    memory: Source | tuple[Source, ...] | None = None  # gauge, bytes (several: proxies of different kinds)
    cpu: Source | None = None  # counter, CPU seconds
    connections: Source | None = None  # gauge, open downstream connections
    endpoints: Source | None = None  # gauge: upstream endpoints known, by caller and destination service
    healthy_endpoints: Source | None = None  # gauge: of those, the ones calls may go to
    no_healthy_upstream: Source | None = None  # counter: calls failed for want of a healthy endpoint
    upstream_connect_failures: Source | None = None  # counter
    circuit_breaker_overflow: Source | None = None  # counter: calls refused by a circuit breaker
    outlier_ejections: Source | None = None  # gauge: endpoints ejected now


@dataclass(frozen=True)
class ControlPlaneDetail(_Group):
    """What the mesh's own control-plane dashboards show, beyond `ControlPlane`."""

    versions: Source | None = None  # gauge with a `version` label
    instances: Source | None = None  # gauge, one series per running instance (counted, never summed)
    memory: Source | None = None  # gauge, bytes
    cpu: Source | None = None  # counter, CPU seconds
    goroutines: Source | None = None  # gauge
    pushes_by_type: Source | None = None  # counter with `type`, send errors excluded
    push_errors: Source | None = None  # counter
    push_time: Source | None = None  # histogram buckets, seconds
    webhook_injections: Source | None = None  # counter with `outcome`
    webhook_validations: Source | None = None  # counter with `outcome`
    grpc_requests: Source | None = None  # counter with `component` and `grpc_code` (Linkerd controllers)
    raft_commit_time: Source | None = None  # gauge, a summary's p99 in seconds after scale
    leader_last_contact: Source | None = None  # gauge, seconds after scale
    autopilot_healthy: Source | None = None  # gauge, 1 healthy
    leader_elections: Source | None = None  # counter
    raft_applies: Source | None = None  # counter: transactions committed through the consensus log
    connected_dataplanes: Source | None = None  # gauge
    # gauges that exist while a required component runs; MeshControlPlaneDown fires when one is absent
    required: tuple[Source, ...] = ()
