"""Recording rules: each signal recorded once per mesh, with normalized labels and a `mesh` label.

Names follow `level:metric:operations`. Alerts and dashboards read these names through
`Recorded.ref`, so every query of a reused signal exists exactly once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshobs import promql, signals
from meshobs.config import Config, duration_seconds
from meshobs.meshes.base import Dialect
from meshobs.promql import Query

QUANTILES = (0.5, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class Recorded:
    level: str
    metric: str
    operation: str

    @property
    def name(self) -> str:
        return f"{self.level}:{self.metric}:{self.operation}"

    def ref(self, mesh: str, **matchers: str) -> str:
        """Selector of this recorded series for one mesh, with optional label matchers
        (a value starting with `~` is a regex match)."""
        parts = [f'mesh="{mesh}"']
        for label, value in matchers.items():
            parts.append(f'{label}=~"{value[1:]}"' if value.startswith("~") else f'{label}="{value}"')
        return f"{self.name}{{{', '.join(parts)}}}"


@dataclass(frozen=True)
class Rule:
    record: str
    expr: str
    labels: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    """A recorded signal at any window: `requests("5m")` is `destination_service:mesh_requests:rate5m`."""

    level: str
    metric: str
    operation: str  # prefix of the window: "rate", "ratio_rate", "increase", ...

    def __call__(self, window: str) -> Recorded:
        return Recorded(self.level, self.metric, f"{self.operation}{window}")


requests = Family("destination_service", "mesh_requests", "rate")
request_errors = Family("destination_service", "mesh_request_errors", "rate")
error_ratio = Family("destination_service", "mesh_request_errors", "ratio_rate")
latency = Family("destination_service", "mesh_request_duration_seconds", "histogram_quantile_rate")
workload_requests = Family("destination_workload", "mesh_requests", "rate")
mtls_requests = Family("destination_workload", "mesh_requests_mtls", "rate")
mtls_ratio = Family("destination_workload", "mesh_requests_mtls", "ratio_rate")
plaintext = Family("destination_workload", "mesh_requests_plaintext", "rate")
authz_denied = Family("destination_workload", "mesh_authz_denied", "rate")
tls_failures = Family("destination_workload_reason", "mesh_tls_handshake_failures", "rate")
config_rejections = Family("destination_workload", "mesh_config_rejections", "increase")
# Read by `meshobs stat / authz / tls` (meshobs/query): per-workload golden signals and edges.
workload_request_errors = Family("destination_workload", "mesh_request_errors", "rate")
workload_latency = Family("destination_workload", "mesh_request_duration_seconds", "histogram_quantile_rate")
authz_allowed = Family("destination_workload", "mesh_authz_allowed", "rate")
workload_tcp_connections = Family("destination_workload", "mesh_tcp_connections", "rate")
dry_run_denied = Family("destination_workload", "mesh_authz_dry_run_denied", "rate")
dry_run_allowed = Family("destination_workload", "mesh_authz_dry_run_allowed", "rate")
edge_requests = Family("edge", "mesh_requests", "rate")
edge_request_errors = Family("edge", "mesh_request_errors", "rate")
workload_edge_requests = Family("workload_edge", "mesh_requests", "rate")
workload_edge_mtls = Family("workload_edge", "mesh_requests_mtls", "rate")
workload_edge_forbidden = Family("workload_edge", "mesh_requests_forbidden", "rate")
workload_edge_plaintext = Family("workload_edge", "mesh_requests_plaintext", "rate")
CERT_EXPIRY = Recorded("destination_workload_cert", "mesh_cert_expiry_timestamp_seconds", "min")
CERT_LIFETIME = Recorded("destination_workload_cert", "mesh_cert_lifetime_seconds", "max")

# From this long on, a window's rate is derived from the shortest recorded one (an average of
# recorded rates), not read again from hours or days of raw samples at every evaluation.
DERIVED_FROM = 1800


def burn_windows(cfg: Config) -> list[str]:
    """Every window of the SLO period's burn-rate table."""
    return sorted({w for b in cfg.slo.burn_rates for w in (b.long_window, b.short_window)}, key=duration_seconds)


def traffic_windows(cfg: Config) -> list[str]:
    """Windows the service request rates are recorded at: the error and latency alerts' and the burn-rate ones."""
    return sorted(set(burn_windows(cfg)) | {dashboard_window(cfg), cfg.alerts.latency.window}, key=duration_seconds)


def dashboard_window(cfg: Config) -> str:
    """The window the dashboards read traffic at: the error-rate alert's, so a panel shows what the alert judges."""
    return cfg.alerts.error_rate.window


def query_window(cfg: Config) -> str:
    """The window of the series recorded for the terminal commands (longer ones are averaged)."""
    return traffic_windows(cfg)[0]


def quantiles(cfg: Config) -> list[float]:
    return sorted(set(QUANTILES) | {cfg.alerts.latency.quantile})


def per_cluster_query(cfg: Config, by: tuple[str, ...], window: str) -> Query:
    """A recording's query: grouped by the cluster label, then `by`, at `window` ("" for an instant)."""
    return Query(by=(cfg.cluster_label,) + by, window=window, cluster_label=cfg.cluster_label)


def extra_matchers(cfg: Config, dialect: Dialect) -> dict[str, str]:
    """The user's extra matchers for this mesh's native series and for the exporter's."""
    return {"native": getattr(cfg.selectors, dialect.name), "exporter": cfg.selectors.exporter}


def _is_derived(window: str, base: str) -> bool:
    return window != base and duration_seconds(window) >= DERIVED_FROM


def traffic_rules(cfg: Config, dialect: Dialect) -> list[Rule]:
    mesh = {"mesh": dialect.name}
    name = dialect.name
    extra = extra_matchers(cfg, dialect)
    rules = []
    windows = traffic_windows(cfg)
    base = windows[0]
    for window in windows:
        if _is_derived(window, base):
            rules.append(Rule(requests(window).name, f"avg_over_time({requests(base).ref(name)}[{window}])", mesh))
            # summed over the window and divided by its evaluations: errors that began half-way
            # through are not averaged over that part alone
            rules.append(Rule(request_errors(window).name,
                              f"sum_over_time({request_errors(base).ref(name)}[{window}])\n"
                              f"/ count_over_time({requests(base).ref(name)}[{window}])", mesh))
        else:
            query = per_cluster_query(cfg, signals.SERVICE, window)
            rules.append(Rule(requests(window).name, signals.REQUESTS.expr(dialect, query, extra=extra), mesh))
            rules.append(Rule(request_errors(window).name, signals.REQUEST_ERRORS.expr(dialect, query, extra=extra), mesh))
        rules.append(Rule(error_ratio(window).name,
                          promql.ratio(request_errors(window).ref(name), requests(window).ref(name)), mesh))
    window = cfg.alerts.latency.window
    for q in quantiles(cfg):
        query = per_cluster_query(cfg, signals.SERVICE, window)
        rules.append(Rule(latency(window).name, signals.REQUEST_DURATION.expr(dialect, query, quantile=q, extra=extra),
                          dict(mesh, quantile=f"{q:g}")))
    return rules


def security_rules(cfg: Config, dialect: Dialect) -> list[Rule]:
    alerts = cfg.alerts
    mesh = {"mesh": dialect.name}
    name = dialect.name
    extra = extra_matchers(cfg, dialect)
    rules = []

    window = alerts.plaintext.window
    workload = per_cluster_query(cfg, signals.WORKLOAD, window)
    # a workload's traffic: its requests, or (ambient, no waypoint) its connections, so that mTLS
    # coverage counts the plaintext connections of workloads that have no L7 view
    rules.append(Rule(workload_requests(window).name, signals.INBOUND_TRAFFIC.expr(dialect, workload, extra=extra), mesh))
    rules.append(Rule(plaintext(window).name, signals.PLAINTEXT_REQUESTS.expr(dialect, workload, extra=extra), mesh))
    total, served_plain = workload_requests(window).ref(name), plaintext(window).ref(name)
    # Requests over mutual TLS are the ones not served in plaintext (a probe is neither finding).
    rules.append(Rule(mtls_requests(window).name, f"clamp_min({total} - ({served_plain} or {total} * 0), 0)", mesh))
    rules.append(Rule(mtls_ratio(window).name, promql.ratio(mtls_requests(window).ref(name), total), mesh))

    burst = alerts.unauthorized_burst
    query = per_cluster_query(cfg, signals.WORKLOAD, burst.window)
    rules.append(Rule(authz_denied(burst.window).name, signals.AUTHZ_DENIED.expr(dialect, query, extra=extra), mesh))
    if _is_derived(burst.baseline_window, burst.window):
        rules.append(Rule(authz_denied(burst.baseline_window).name,
                          f"avg_over_time({authz_denied(burst.window).ref(name)}[{burst.baseline_window}])", mesh))
    else:
        query = per_cluster_query(cfg, signals.WORKLOAD, burst.baseline_window)
        rules.append(Rule(authz_denied(burst.baseline_window).name, signals.AUTHZ_DENIED.expr(dialect, query, extra=extra), mesh))

    query = per_cluster_query(cfg, signals.WORKLOAD + ("reason",), alerts.mtls_failure.window)
    rules.append(Rule(tls_failures(alerts.mtls_failure.window).name,
                      signals.TLS_FAILURES.expr(dialect, query, extra=extra), mesh))

    query = per_cluster_query(cfg, signals.WORKLOAD + ("cert",), "")
    rules.append(Rule(CERT_EXPIRY.name, signals.CERT_EXPIRY.expr(dialect, query, extra=extra), mesh))
    # A certificate's lifetime where its start is known; else the mesh's default leaf lifetime.
    expiry = CERT_EXPIRY.ref(name)
    known = f"{expiry} - ignoring(mesh) ({signals.CERT_NOT_BEFORE.expr(dialect, query, extra=extra)})"
    default = f"{expiry} * 0 + {duration_seconds(dialect.leaf_lifetime):g}"
    rules.append(Rule(CERT_LIFETIME.name, promql.or_fallback(known, default, ignoring=("mesh",)), mesh))

    if signals.CONFIG_REJECTIONS.available(dialect):
        window = alerts.config_rejected.window
        query = per_cluster_query(cfg, signals.WORKLOAD, window)
        rules.append(Rule(config_rejections(window).name, signals.CONFIG_REJECTIONS.expr(dialect, query, extra=extra), mesh))
    return rules


def query_rules(cfg: Config, dialect: Dialect) -> list[Rule]:
    """What the terminal commands need beyond the alerts' series, at the shortest traffic window
    (longer ones are averaged from it by the commands) and the latency window."""
    mesh = {"mesh": dialect.name}
    extra = extra_matchers(cfg, dialect)
    window = query_window(cfg)
    workload = per_cluster_query(cfg, signals.WORKLOAD, window)
    edge = per_cluster_query(cfg, signals.EDGE, window)
    workload_edge = per_cluster_query(cfg, signals.WORKLOAD_EDGE, window)
    denied_edge = per_cluster_query(cfg, signals.DENIED_EDGE, window)
    rules = [Rule(workload_request_errors(window).name, signals.INBOUND_ERRORS.expr(dialect, workload, extra=extra), mesh),
             Rule(authz_allowed(window).name, signals.AUTHZ_ALLOWED.expr(dialect, workload, extra=extra), mesh),
             Rule(edge_requests(window).name, signals.EDGE_REQUESTS.expr(dialect, edge, extra=extra), mesh),
             Rule(workload_edge_requests(window).name, signals.EDGE_REQUESTS.expr(dialect, workload_edge, extra=extra), mesh)]
    for family, signal, query in ((edge_request_errors, signals.EDGE_ERRORS, edge),
                                  (workload_edge_mtls, signals.EDGE_MTLS, workload_edge),
                                  (workload_edge_forbidden, signals.EDGE_FORBIDDEN, denied_edge),
                                  (workload_edge_plaintext, signals.EDGE_PLAINTEXT, workload_edge)):
        if signal.available(dialect):
            rules.append(Rule(family(window).name, signal.expr(dialect, query, extra=extra), mesh))
    for family, signal in ((dry_run_denied, signals.DRY_RUN_DENIED), (dry_run_allowed, signals.DRY_RUN_ALLOWED),
                           (workload_tcp_connections, signals.TCP_CONNECTIONS)):
        if signal.available(dialect):
            rules.append(Rule(family(window).name, signal.expr(dialect, workload, extra=extra), mesh))
    window = cfg.alerts.latency.window
    workload = per_cluster_query(cfg, signals.WORKLOAD, window)
    for q in quantiles(cfg) if signals.INBOUND_DURATION.available(dialect) else ():
        rules.append(Rule(workload_latency(window).name,
                          signals.INBOUND_DURATION.expr(dialect, workload, quantile=q, extra=extra),
                          dict(mesh, quantile=f"{q:g}")))
    return rules
