"""Recording rules of the signals that dashboards and alerts both read beyond HTTP: TCP per
workload and upstream health per caller and service, at the upstream-health window.

Same naming and `mesh` label as meshobs/recordings.py; a signal a mesh does not report is not
recorded (and its panels and alerts are not rendered)."""

from __future__ import annotations

from dataclasses import dataclass

from meshobs import recordings as rec
from meshobs import signals
from meshobs import signals_traffic as st
from meshobs.config import Config
from meshobs.meshes.base import Dialect
from meshobs.recordings import Family, Recorded, Rule, extra_matchers
from meshobs.signals import Signal

tcp_opened = Family("destination_workload", "mesh_tcp_connections_opened", "rate")
tcp_mtls_opened = Family("destination_workload", "mesh_tcp_connections_opened_mtls", "rate")
tcp_sent = Family("destination_workload", "mesh_tcp_sent_bytes", "rate")
tcp_received = Family("destination_workload", "mesh_tcp_received_bytes", "rate")
no_healthy_upstream = Family("source_workload_destination_service", "mesh_upstream_no_healthy", "rate")
connect_failures = Family("source_workload_destination_service", "mesh_upstream_connect_failures", "rate")
overflows = Family("source_workload_destination_service", "mesh_upstream_circuit_breaker_overflows", "rate")
EJECTIONS = Recorded("source_workload_destination_service", "mesh_upstream_ejected_endpoints", "sum")
ENDPOINTS = Recorded("source_workload_destination_service", "mesh_upstream_endpoints", "sum")
HEALTHY_ENDPOINTS = Recorded("source_workload_destination_service", "mesh_upstream_healthy_endpoints", "sum")
PROXY_LIVE = Recorded("namespace_workload", "mesh_proxy_live", "min")
PROXY_MEMORY = Recorded("namespace_workload", "mesh_proxy_memory_bytes", "sum")

# (family or fixed name, signal, normalized labels it is recorded by): TCP at the traffic window
# the dashboards read, upstream health at the upstream alerts' window
_TCP: tuple[tuple[Family, Signal, tuple[str, ...]], ...] = (
    (tcp_opened, st.TCP_OPENED, signals.WORKLOAD),
    (tcp_mtls_opened, st.TCP_MTLS_OPENED, signals.WORKLOAD),
    (tcp_sent, st.TCP_SENT, signals.WORKLOAD),
    (tcp_received, st.TCP_RECEIVED, signals.WORKLOAD),
)
_WINDOWED: tuple[tuple[Family, Signal, tuple[str, ...]], ...] = (
    (no_healthy_upstream, st.NO_HEALTHY_UPSTREAM, st.CALLER),
    (connect_failures, st.UPSTREAM_CONNECT_FAILURES, st.CALLER),
    (overflows, st.CIRCUIT_BREAKER_OVERFLOW, st.CALLER),
)
_INSTANT: tuple[tuple[Recorded, Signal, tuple[str, ...]], ...] = (
    (EJECTIONS, st.OUTLIER_EJECTIONS, st.CALLER),
    (ENDPOINTS, st.UPSTREAM_ENDPOINTS, st.CALLER),
    (HEALTHY_ENDPOINTS, st.UPSTREAM_HEALTHY, st.CALLER),
    (PROXY_LIVE, st.PROXY_LIVE, st.PROXY),
    (PROXY_MEMORY, st.PROXY_MEMORY, st.PROXY),
)


@dataclass(frozen=True)
class AnyOfRecorded:
    """Several recorded series as one selector (`{__name__=~"a|b", ...}`), for dashboard variables
    that must list a workload whatever it serves: HTTP, TCP, or only a proxy."""

    members: tuple[Recorded, ...]

    def ref(self, mesh: str, **matchers: str) -> str:
        first = self.members[0]
        names = "|".join(m.name for m in self.members)
        return f'{{__name__=~"{names}", {first.ref(mesh, **matchers)[len(first.name) + 1:]}'


def any_traffic(cfg: Config, http_window: str) -> AnyOfRecorded:
    """Where a cluster has any meshed traffic or proxy: a TCP-only mesh (Consul's default protocol)
    has no HTTP series at all."""
    return AnyOfRecorded((rec.requests(http_window), tcp_opened(tcp_window(cfg)), PROXY_MEMORY))


def any_workload_traffic(cfg: Config, http_window: str) -> AnyOfRecorded:
    return AnyOfRecorded((rec.workload_requests(http_window), tcp_opened(tcp_window(cfg))))


def window(cfg: Config) -> str:
    return cfg.alerts.upstream_health.window


def tcp_window(cfg: Config) -> str:
    """TCP rates are traffic: recorded at the window the dashboards read HTTP traffic at."""
    return rec.dashboard_window(cfg)


def _recordings(cfg: Config) -> list[tuple[Recorded, Signal, tuple[str, ...], str]]:
    """(recorded series, signal, normalized labels, window; "" for an instant) of every signal recorded here."""
    tcp, upstream = tcp_window(cfg), window(cfg)
    return ([(family(tcp), signal, by, tcp) for family, signal, by in _TCP]
            + [(family(upstream), signal, by, upstream) for family, signal, by in _WINDOWED]
            + [(name, signal, by, "") for name, signal, by in _INSTANT])


def recorded(cfg: Config, dialect: Dialect, signal: Signal) -> Recorded | None:
    """The recorded series holding `signal` for this mesh, None where the mesh does not report it."""
    if not signal.available(dialect):
        return None
    return next((name for name, candidate, _, _ in _recordings(cfg) if candidate is signal), None)


def rules(cfg: Config, dialect: Dialect) -> list[Rule]:
    mesh = {"mesh": dialect.name}
    extra = extra_matchers(cfg, dialect)
    result = []
    for name, signal, by, at in _recordings(cfg):
        if signal.available(dialect):
            result.append(Rule(name.name, signal.expr(dialect, rec.per_cluster_query(cfg, by, at), extra=extra), mesh))
    return result
