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

QUANTILES = (0.5, 0.9, 0.99)


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
    return sorted(set(burn_windows(cfg)) | {cfg.alerts.error_rate.window, cfg.alerts.latency.window}, key=duration_seconds)


def quantiles(cfg: Config) -> list[float]:
    return sorted(set(QUANTILES) | {cfg.alerts.latency.quantile})


def _query(cfg: Config, dialect: Dialect, by: tuple[str, ...], window: str) -> Query:
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
            query = _query(cfg, dialect, signals.SERVICE, window)
            rules.append(Rule(requests(window).name, signals.REQUESTS.expr(dialect, query, extra=extra), mesh))
            rules.append(Rule(request_errors(window).name, signals.REQUEST_ERRORS.expr(dialect, query, extra=extra), mesh))
        rules.append(Rule(error_ratio(window).name,
                          promql.ratio(request_errors(window).ref(name), requests(window).ref(name)), mesh))
    window = cfg.alerts.latency.window
    for q in quantiles(cfg):
        query = _query(cfg, dialect, signals.SERVICE, window)
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
    workload = _query(cfg, dialect, signals.WORKLOAD, window)
    rules.append(Rule(workload_requests(window).name, signals.INBOUND_REQUESTS.expr(dialect, workload, extra=extra), mesh))
    rules.append(Rule(plaintext(window).name, signals.PLAINTEXT_REQUESTS.expr(dialect, workload, extra=extra), mesh))
    total, served_plain = workload_requests(window).ref(name), plaintext(window).ref(name)
    # Requests over mutual TLS are the ones not served in plaintext (a probe is neither finding).
    rules.append(Rule(mtls_requests(window).name, f"clamp_min({total} - ({served_plain} or {total} * 0), 0)", mesh))
    rules.append(Rule(mtls_ratio(window).name, promql.ratio(mtls_requests(window).ref(name), total), mesh))

    burst = alerts.unauthorized_burst
    query = _query(cfg, dialect, signals.WORKLOAD, burst.window)
    rules.append(Rule(authz_denied(burst.window).name, signals.AUTHZ_DENIED.expr(dialect, query, extra=extra), mesh))
    if _is_derived(burst.baseline_window, burst.window):
        rules.append(Rule(authz_denied(burst.baseline_window).name,
                          f"avg_over_time({authz_denied(burst.window).ref(name)}[{burst.baseline_window}])", mesh))
    else:
        query = _query(cfg, dialect, signals.WORKLOAD, burst.baseline_window)
        rules.append(Rule(authz_denied(burst.baseline_window).name, signals.AUTHZ_DENIED.expr(dialect, query, extra=extra), mesh))

    query = _query(cfg, dialect, signals.WORKLOAD + ("reason",), alerts.mtls_failure.window)
    rules.append(Rule(tls_failures(alerts.mtls_failure.window).name,
                      signals.TLS_FAILURES.expr(dialect, query, extra=extra), mesh))

    query = _query(cfg, dialect, signals.WORKLOAD + ("cert",), "")
    rules.append(Rule(CERT_EXPIRY.name, signals.CERT_EXPIRY.expr(dialect, query, extra=extra), mesh))
    # A certificate's lifetime where its start is known; else the mesh's default leaf lifetime.
    expiry = CERT_EXPIRY.ref(name)
    known = f"{expiry} - ignoring(mesh) ({signals.CERT_NOT_BEFORE.expr(dialect, query, extra=extra)})"
    default = f"{expiry} * 0 + {duration_seconds(dialect.leaf_lifetime):g}"
    rules.append(Rule(CERT_LIFETIME.name, promql.or_fallback(known, default, ignoring=("mesh",)), mesh))

    if signals.CONFIG_REJECTIONS.available(dialect):
        window = alerts.config_rejected.window
        query = _query(cfg, dialect, signals.WORKLOAD, window)
        rules.append(Rule(config_rejections(window).name, signals.CONFIG_REJECTIONS.expr(dialect, query, extra=extra), mesh))
    return rules
