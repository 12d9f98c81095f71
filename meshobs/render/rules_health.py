"""Upstream, proxy and control-plane alerts: the same names on every mesh, rendered where the mesh
reports the signal (meshobs/signals_traffic.py says why not elsewhere).

`MeshUpstreamConnectFailures` is also the TCP connection-failure alert: on every mesh it reads the
callers' failed connections, TCP services' included, so a second TCP alert would page twice."""

from __future__ import annotations

import re
from typing import Callable

from meshobs import promql
from meshobs import recordings as rec
from meshobs import recordings_traffic as rt
from meshobs import signals_traffic as st
from meshobs.config import Config
from meshobs.meshes.base import Dialect
from meshobs.render.rules import VALUE, Alert

ALERT_NAMES = (
    "MeshNoHealthyUpstream",
    "MeshUpstreamConnectFailures",
    "MeshCircuitBreakerOpen",
    "MeshOutlierEjections",
    "MeshProxyNotLive",
    "MeshControlPlaneDown",
)

_CALLER = "{{ $labels.source_workload }} in {{ $labels.source_namespace }}"
_SERVICE = "{{ $labels.destination_service }}"

# (alert, signal, what fails, what follows the service, summary's verb phrase)
_FAILURE_RATES = (
    ("MeshNoHealthyUpstream", st.NO_HEALTHY_UPSTREAM, "calls/s failed because no endpoint of", " was healthy",
     "finds no healthy endpoint of"),
    ("MeshUpstreamConnectFailures", st.UPSTREAM_CONNECT_FAILURES, "connections/s failed to reach", "", "cannot connect to"),
    ("MeshCircuitBreakerOpen", st.CIRCUIT_BREAKER_OVERFLOW, "calls/s were refused by the circuit breaker towards", "",
     "overflows its circuit breaker towards"),
)


def _no_ready_endpoints(cfg: Config, dialect: Dialect) -> list[Alert]:
    """MeshNoHealthyUpstream where the mesh counts no failed calls but reports its balancers'
    endpoints (Linkerd): a caller whose balancer for a service has endpoints, none of them ready."""
    healthy = rt.recorded(cfg, dialect, st.UPSTREAM_HEALTHY)
    known = rt.recorded(cfg, dialect, st.UPSTREAM_ENDPOINTS)
    if st.NO_HEALTHY_UPSTREAM.available(dialect) or healthy is None or known is None:
        return []
    up = cfg.alerts.upstream_health
    return [Alert(
        "MeshNoHealthyUpstream", f"{healthy.ref(dialect.name)} == 0\nand {known.ref(dialect.name)} > 0", up.for_, up.severity,
        f"{dialect.title}: {{{{ $labels.source_workload }}}} finds no healthy endpoint of {_SERVICE}",
        f"None of the endpoints of {_SERVICE} known to the proxy of {_CALLER} has been ready for {up.for_}: "
        "its calls fail fast.",
    )]


def _failure_rates(cfg: Config, dialect: Dialect) -> list[Alert]:
    up = cfg.alerts.upstream_health
    alerts = []
    for name, signal, what, tail, verb in _FAILURE_RATES:
        recorded = rt.recorded(cfg, dialect, signal)
        if recorded is None:
            continue
        alerts.append(Alert(
            name, f"{recorded.ref(dialect.name)} > {up.min_failures_per_second:g}", up.for_, up.severity,
            f"{dialect.title}: {{{{ $labels.source_workload }}}} {verb} {_SERVICE}",
            f"{VALUE} {what} {_SERVICE}{tail}, from {_CALLER}, over the last {up.window} "
            f"(threshold {up.min_failures_per_second:g}/s).",
        ))
    return alerts


# (alert, gauge signal, condition, summary, description given the `for` duration): states held for `for`
_STATES = (
    ("MeshOutlierEjections", st.OUTLIER_EJECTIONS, "> 0",
     f"endpoints of {_SERVICE} are ejected by {{{{ $labels.source_workload }}}}",
     lambda for_: f"{VALUE} endpoints of {_SERVICE} have been ejected by outlier detection in the proxy of {_CALLER} "
                  f"for {for_}: they failed its calls."),
    ("MeshProxyNotLive", st.PROXY_LIVE, "== 0", "a proxy of {{ $labels.workload }} is not live",
     lambda for_: "A sidecar proxy of {{ $labels.workload }} in {{ $labels.namespace }} has not been live "
                  f"(initializing or draining) for {for_}: it serves no traffic."),
)


def _states(cfg: Config, dialect: Dialect) -> list[Alert]:
    up = cfg.alerts.upstream_health
    alerts = []
    for name, signal, condition, summary, description in _STATES:
        recorded = rt.recorded(cfg, dialect, signal)
        if recorded is not None:
            alerts.append(Alert(name, f"{recorded.ref(dialect.name)} {condition}", up.for_, up.severity,
                                f"{dialect.title}: {summary}", description(up.for_)))
    return alerts


_EQUALITY = re.compile(r'^(\w+)="([^"\\]*)"$')


def _data_plane(cfg: Config, dialect: Dialect) -> str:
    """Series every cluster running the mesh's proxies has: requests at a proxy, or the exporter reading one."""
    extra = rec.extra_matchers(cfg, dialect)
    return promql.union([promql.selector(s, extra=extra[s.origin], cluster_label=cfg.cluster_label)
                         for s in (dialect.requests, dialect.target_up_source())])


def missing(cfg: Config, dialect: Dialect, required: str, labels: dict[str, str]) -> str:
    """Clusters with proxies but without `required` (carrying `labels`, as absent() would), or
    `required` absent everywhere while no proxy reports either (a single Prometheus, no traffic)."""
    return promql.missing_per_group(required, _data_plane(cfg, dialect), cfg.cluster_label, labels)


def _control_plane_down(cfg: Config, dialect: Dialect) -> list[Alert]:
    """Per cluster: a store holding many clusters has the control plane of the others, so absent()
    alone would fire only when the control plane is missing in every cluster."""
    detail = dialect.control_plane_detail
    extra = getattr(cfg.selectors, dialect.name)
    parts = []
    for source in detail.required:
        labels = dict(m.groups() for m in map(_EQUALITY.match, source.matchers) if m)
        parts.append(missing(cfg, dialect, promql.selector(source, extra=extra, cluster_label=cfg.cluster_label), labels))
    if detail.autopilot_healthy is not None:
        healthy = promql.selector(detail.autopilot_healthy, extra=extra, cluster_label=cfg.cluster_label)
        parts.append(f"max by ({cfg.cluster_label}) ({healthy}) < 1")
    if not parts:
        return []
    up = cfg.alerts.upstream_health
    return [Alert(
        "MeshControlPlaneDown", "\nor ".join(parts), up.control_plane_for, up.control_plane_severity,
        f"{dialect.title}: control plane down{{{{ with $labels.component }}}} ({{{{ . }}}}){{{{ end }}}}",
        f"{dialect.title}'s control plane{{{{ with $labels.component }}}} component {{{{ . }}}}{{{{ end }}}} has been "
        f"missing or unhealthy for {up.control_plane_for}: proxies get no new configuration, endpoints or certificates.",
    )]


BUILDERS: tuple[Callable[[Config, Dialect], list[Alert]], ...] = (
    _failure_rates, _no_ready_endpoints, _states, _control_plane_down,
)


def alerts(cfg: Config, dialect: Dialect) -> list[Alert]:
    return [alert for build in BUILDERS for alert in build(cfg, dialect)]
