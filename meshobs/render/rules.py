"""Prometheus rule files per mesh: `alerts/<mesh>/recording-rules.yaml` and `alerting-rules.yaml`.

Alert expressions read only recorded series (meshobs/recordings.py), so a ratio is always a
ratio of aggregated rates and every mesh's alerts look the same but for the `mesh` matcher.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshobs import promql, signals
from meshobs import recordings as rec
from meshobs import yamlfmt
from meshobs.config import Config, duration_seconds
from meshobs.meshes.base import Dialect

ALERT_NAMES = (
    "MeshHighErrorRate",
    "MeshHighLatencyP99",
    "MeshUnauthorizedAccessBurst",
    "MeshMTLSFailure",
    "MeshPlaintextTraffic",
    "MeshCertificateExpiringSoon",
    "MeshErrorBudgetBurn",
    "MeshProxyConfigRejected",
    "MeshExporterTargetDown",
)

# (long window, short window, burn-rate factor, severity): the SRE workbook's 30-day table.
# Rates read better as 0.5 than as humanize's 500m.
VALUE = '{{ $value | printf "%.3g" }}'

BURN_RATE_WINDOWS = (
    ("1h", "5m", 14.4, "page"),
    ("6h", "30m", 6.0, "page"),
    ("1d", "2h", 3.0, "ticket"),
    ("3d", "6h", 1.0, "ticket"),
)


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    extra_labels: tuple[tuple[str, str], ...] = ()


def _seconds_text(duration: str) -> str:
    return f"{duration_seconds(duration):g}"


def alerts(cfg: Config, dialect: Dialect) -> list[Alert]:
    a = cfg.alerts
    mesh = dialect.name
    where_service = "{{ $labels.destination_service }} in {{ $labels.destination_namespace }}"
    where_workload = "{{ $labels.destination_workload }} in {{ $labels.destination_namespace }}"
    result: list[Alert] = []

    err = a.error_rate
    result.append(Alert(
        "MeshHighErrorRate",
        f"{rec.error_ratio(err.window).ref(mesh)} > {err.ratio:g}\n"
        f"and {rec.requests(err.window).ref(mesh)} > {err.min_requests_per_second:g}",
        err.for_, err.severity,
        f"{dialect.title}: {{{{ $labels.destination_service }}}} answers more than {err.ratio:.0%} of requests with 5xx",
        f"{{{{ $value | humanizePercentage }}}} of requests to {where_service} failed with 5xx over the last {err.window} "
        f"(threshold {err.ratio:.0%}, at least {err.min_requests_per_second:g} req/s).",
    ))

    lat = a.latency
    result.append(Alert(
        "MeshHighLatencyP99",
        f'{rec.latency(lat.window).ref(mesh, quantile=f"{lat.quantile:g}")} > {lat.threshold_seconds:g}\n'
        f"and ignoring(quantile) {rec.requests(lat.window).ref(mesh)} > {lat.min_requests_per_second:g}",
        lat.for_, lat.severity,
        f"{dialect.title}: {{{{ $labels.destination_service }}}} p{lat.quantile * 100:g} latency above {lat.threshold_seconds:g}s",
        f"p{lat.quantile * 100:g} latency of {where_service} is {{{{ $value | humanizeDuration }}}} over the last {lat.window} "
        f"(threshold {lat.threshold_seconds:g}s).",
    ))

    burst = a.unauthorized_burst
    now, baseline = rec.authz_denied(burst.window).ref(mesh), rec.authz_denied(burst.baseline_window).ref(mesh)
    result.append(Alert(
        "MeshUnauthorizedAccessBurst",
        f"(\n  {now} > {burst.factor:g} * {baseline}\n  and {now} > {burst.min_denials_per_second:g}\n)\n"
        f"or {now} > {burst.absolute_denials_per_second:g}",
        burst.for_, burst.severity,
        f"{dialect.title}: burst of authorization denials at {{{{ $labels.destination_workload }}}}",
        f"{where_workload} denies {VALUE} requests/s by authorization policy over the last {burst.window}, "
        f"more than {burst.factor:g}x its {burst.baseline_window} baseline or above {burst.absolute_denials_per_second:g}/s.",
    ))

    tls = a.mtls_failure
    result.append(Alert(
        "MeshMTLSFailure",
        f"{rec.tls_failures(tls.window).ref(mesh)} > {tls.min_failures_per_second:g}",
        tls.for_, tls.severity,
        f"{dialect.title}: mTLS handshakes fail at {{{{ $labels.destination_workload }}}} ({{{{ $labels.reason }}}})",
        f"{where_workload} rejects {VALUE} TLS handshakes/s with reason {{{{ $labels.reason }}}} "
        f"over the last {tls.window}.",
    ))

    plain = a.plaintext
    result.append(Alert(
        "MeshPlaintextTraffic",
        f"{rec.plaintext(plain.window).ref(mesh)} > {plain.min_requests_per_second:g}",
        plain.for_, plain.severity,
        f"{dialect.title}: plaintext traffic reaches {{{{ $labels.destination_workload }}}}",
        f"{where_workload} receives {VALUE} requests/s without mutual TLS over the last {plain.window}.",
    ))

    exp = a.cert_expiry
    for severity, within in (("warning", exp.warning), ("critical", exp.critical)):
        result.append(Alert(
            "MeshCertificateExpiringSoon",
            f"{rec.CERT_EXPIRY.ref(mesh)} - time() < {_seconds_text(within)}",
            exp.for_, severity,
            f"{dialect.title}: {{{{ $labels.cert }}}} certificate of {{{{ $labels.destination_workload }}}} expires within {within}",
            f"The {{{{ $labels.cert }}}} certificate of {where_workload} expires in {{{{ $value | humanizeDuration }}}}.",
        ))

    budget = 1 - cfg.slo.availability_percent / 100
    guard = err.min_requests_per_second
    for long, short, factor, severity in BURN_RATE_WINDOWS:
        threshold = f"{factor * budget:.6g}"
        result.append(Alert(
            "MeshErrorBudgetBurn",
            f"{rec.error_ratio(long).ref(mesh)} > {threshold}\n"
            f"and {rec.error_ratio(short).ref(mesh)} > {threshold}\n"
            f"and {rec.requests(short).ref(mesh)} > {guard:g}",
            "2m" if severity == "page" else "15m", severity,
            f"{dialect.title}: {{{{ $labels.destination_service }}}} burns its error budget {factor:g}x too fast",
            f"{where_service} has an error ratio of {{{{ $value | humanizePercentage }}}} over {long} and {short}: "
            f"{factor:g}x the rate that spends the {cfg.slo.availability_percent:g}% SLO's budget in {cfg.slo.period}.",
            (("long_window", long), ("short_window", short)),
        ))

    if signals.CONFIG_REJECTIONS.available(dialect):
        rej = a.config_rejected
        result.append(Alert(
            "MeshProxyConfigRejected",
            f"{rec.config_rejections(rej.window).ref(mesh)} > 0",
            rej.for_, rej.severity,
            f"{dialect.title}: configuration rejected",
            f"{VALUE} configuration updates were rejected in the last {rej.window}"
            "{{ with $labels.destination_workload }} by {{ . }}{{ end }}"
            "{{ with $labels.destination_namespace }} in {{ . }}{{ end }}.",
        ))

    result.append(Alert(
        "MeshExporterTargetDown",
        f"{promql.selector(dialect.target_up_source(), extra=cfg.selectors.exporter, cluster_label=cfg.cluster_label)} == 0",
        "5m", "warning",
        f"{dialect.title}: the meshobs exporter cannot read proxy {{{{ $labels.workload }}}}",
        "The meshobs exporter has failed to scrape the proxy of {{ $labels.workload }} in {{ $labels.namespace }} "
        "for 5 minutes; its security signals are missing.",
    ))
    return result


def _alert_rule(cfg: Config, dialect: Dialect, alert: Alert) -> dict:
    labels = {"severity": alert.severity, "mesh": dialect.name}
    labels.update(dict(alert.extra_labels))
    return {
        "alert": alert.name,
        "expr": alert.expr,
        "for": alert.for_,
        "labels": labels,
        "annotations": {
            "summary": alert.summary,
            "description": alert.description,
            "runbook_url": f"{cfg.runbook_url_base}{alert.name.lower()}",
        },
    }


def _recording_group(name: str, rules: list[rec.Rule]) -> dict:
    return {"name": name, "rules": [{"record": r.record, "expr": r.expr, "labels": dict(r.labels)} for r in rules]}


def render(cfg: Config, dialect: Dialect) -> dict[str, bytes]:
    from meshobs import recordings_traffic
    from meshobs.render import rules_health  # builds on this module's Alert

    mesh = dialect.name
    recording = {"groups": [
        _recording_group(f"meshobs-{mesh}-traffic", rec.traffic_rules(cfg, dialect)),
        _recording_group(f"meshobs-{mesh}-security", rec.security_rules(cfg, dialect)),
        _recording_group(f"meshobs-{mesh}-tcp-and-upstreams", recordings_traffic.rules(cfg, dialect)),
    ]}
    every_alert = alerts(cfg, dialect) + rules_health.alerts(cfg, dialect)
    alerting = {"groups": [{
        "name": f"meshobs-{mesh}-alerts",
        "rules": [_alert_rule(cfg, dialect, alert) for alert in every_alert],
    }]}
    header = f"# Rendered by meshobs for {dialect.title}. Do not edit: change meshobs.yaml and run `meshobs build`.\n"
    return {
        f"alerts/{mesh}/recording-rules.yaml": (header + yamlfmt.dump(recording)).encode(),
        f"alerts/{mesh}/alerting-rules.yaml": (header + yamlfmt.dump(alerting)).encode(),
    }
