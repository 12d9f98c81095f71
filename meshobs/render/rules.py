"""Prometheus rule files per mesh: `alerts/<mesh>/recording-rules.yaml` and `alerting-rules.yaml`.

Alert expressions read recorded series (meshobs/recordings.py), so a ratio is always a ratio of
aggregated rates and every mesh's alerts look the same but for the `mesh` matcher. Three read
raw series on purpose: the exporter's real-time burst state (a recording rule in between would
add an evaluation interval to the onset), its per-proxy `meshobs_target_up`, and Prometheus's
own `up` of the exporter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from meshobs import promql, signals
from meshobs import recordings as rec
from meshobs import yamlfmt
from meshobs.config import Config, duration_seconds
from meshobs.meshes.base import Dialect
from meshobs.promql import Query

ALERT_NAMES = (
    "MeshHighErrorRate",
    "MeshHighLatencyP99",
    "MeshUnauthorizedAccessBurst",
    "MeshUnauthorizedAccessSustained",
    "MeshMTLSFailure",
    "MeshPlaintextTraffic",
    "MeshCertificateExpiringSoon",
    "MeshErrorBudgetBurn",
    "MeshProxyConfigRejected",
    "MeshExporterTargetDown",
    "MeshExporterDown",
    "MeshPolicyDryRunDenials",  # only where the mesh's proxy reports dry-run decisions
)

# Rates read better as 0.5 than as humanize's 500m.
VALUE = '{{ $value | printf "%.3g" }}'


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


def _workload_key(cfg: Config) -> tuple[str, ...]:
    return (cfg.cluster_label,) + signals.WORKLOAD


def alerts(cfg: Config, dialect: Dialect) -> list[Alert]:
    a = cfg.alerts
    mesh = dialect.name
    where_service = "{{ $labels.destination_service }} in {{ $labels.destination_namespace }}"
    where_workload = "{{ $labels.destination_workload }} in {{ $labels.destination_namespace }}"
    result: list[Alert] = []

    err = a.error_rate
    result.append(Alert(
        "MeshHighErrorRate",
        promql.ratio_with_volume(rec.error_ratio(err.window).ref(mesh), rec.requests(err.window).ref(mesh), err.ratio,
                                 duration_seconds(err.window), err.min_requests),
        err.for_, err.severity,
        f"{dialect.title}: {{{{ $labels.destination_service }}}} fails more than {err.ratio:.0%} of requests",
        f"{{{{ $value | humanizePercentage }}}} of requests to {where_service} failed (5xx, failed gRPC calls, "
        f"calls no pod answered) over the last {err.window} (threshold {err.ratio:.0%}, at least {err.min_requests:g} requests).",
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
    workload = Query(by=_workload_key(cfg), window="", cluster_label=cfg.cluster_label)
    extra = rec.extra_matchers(cfg, dialect)
    burst_state = signals.BURST_ACTIVE.expr(dialect, workload, extra=extra)
    started = signals.BURSTS_STARTED.expr(dialect, replace(workload, window=burst.window), extra=extra)
    summary = f"{dialect.title}: burst of authorization denials at {{{{ $labels.destination_workload }}}}"
    # The exporter judges a burst in real time: firing at the first evaluation that sees it, and,
    # since a burst shorter than a scrape interval may never be sampled as 1, for `window` after
    # the exporter counted one starting.
    result.append(Alert(
        "MeshUnauthorizedAccessBurst", f"{burst_state} > 0\nor\n{started} > 0", "0s", burst.severity, summary,
        f"The meshobs exporter saw a burst of authorization denials at {where_workload} (in the last {burst.window}): "
        f"more than {burst.factor:g}x its baseline, or above {burst.absolute_denials_per_second:g}/s.",
        (("basis", "exporter"),),
    ))
    now, baseline = rec.authz_denied(burst.window).ref(mesh), rec.authz_denied(burst.baseline_window).ref(mesh)
    from_rates = (f"(\n  {now} > {burst.factor:g} * {baseline}\n  and {now} > {burst.min_denials_per_second:g}\n)\n"
                  f"or {now} > {burst.absolute_denials_per_second:g}")
    result.append(Alert(
        "MeshUnauthorizedAccessBurst", promql.unless_present(from_rates, burst_state, workload.by),
        burst.for_, burst.severity, summary,
        f"{where_workload} denies {VALUE} requests/s by authorization policy over the last {burst.window}, "
        f"more than {burst.factor:g}x its {burst.baseline_window} baseline or above {burst.absolute_denials_per_second:g}/s.",
        (("basis", "rates"),),
    ))

    sustained = a.unauthorized_sustained
    result.append(Alert(
        "MeshUnauthorizedAccessSustained",
        f"{now} > {sustained.min_denials_per_second:g}",
        sustained.for_, sustained.severity,
        f"{dialect.title}: {{{{ $labels.destination_workload }}}} keeps denying requests",
        f"{where_workload} has denied {VALUE} requests/s by authorization policy for at least {sustained.for_} "
        f"(threshold {sustained.min_denials_per_second:g}/s over {burst.window}); it fires for as long as this lasts.",
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
    # ztunnel (Istio ambient) sees connections, not requests
    units = "requests" if dialect.ztunnels is None else "requests or connections"
    result.append(Alert(
        "MeshPlaintextTraffic",
        f"{rec.plaintext(plain.window).ref(mesh)} > {plain.min_requests_per_second:g}",
        plain.for_, plain.severity,
        f"{dialect.title}: plaintext traffic reaches {{{{ $labels.destination_workload }}}}",
        f"{where_workload} serves {VALUE} {units}/s without mutual TLS over the last {plain.window}.",
    ))

    exp = a.cert_expiry
    of_workload = "{{ with $labels.destination_workload }} of {{ . }}{{ end }}"
    in_namespace = "{{ with $labels.destination_namespace }} in {{ . }}{{ end }}"
    leaf_left = f"({rec.CERT_EXPIRY.ref(mesh, cert='leaf')} - time()) / {rec.CERT_LIFETIME.ref(mesh, cert='leaf')}"
    for severity, fraction in (("warning", exp.leaf_warning_fraction), ("critical", exp.leaf_critical_fraction)):
        result.append(Alert(
            "MeshCertificateExpiringSoon", f"{leaf_left} < {fraction:g}", exp.for_, severity,
            f"{dialect.title}: leaf certificate{of_workload} is not being renewed",
            f"The leaf certificate{of_workload}{in_namespace} has {{{{ $value | humanizePercentage }}}} of its lifetime "
            f"left (threshold {fraction:.0%}): the mesh renews it long before, so its rotation has failed.",
            (("basis", "lifetime"),),
        ))
    for severity, within in (("warning", exp.warning), ("critical", exp.critical)):
        result.append(Alert(
            "MeshCertificateExpiringSoon",
            f"{rec.CERT_EXPIRY.ref(mesh, cert='~(?:ca|root|issuer)')} - time() < {_seconds_text(within)}",
            exp.for_, severity,
            f"{dialect.title}: {{{{ $labels.cert }}}} certificate{of_workload} expires within {within}",
            f"The {{{{ $labels.cert }}}} certificate{of_workload}{in_namespace} expires in {{{{ $value | humanizeDuration }}}}.",
            (("basis", "expiry"),),
        ))

    slo = cfg.slo
    budget = 1 - slo.availability_percent / 100
    for burn in slo.burn_rates:
        threshold = f"{burn.factor * budget:.6g}"
        result.append(Alert(
            "MeshErrorBudgetBurn",
            f"{rec.error_ratio(burn.long_window).ref(mesh)} > {threshold}\n"
            f"and {rec.error_ratio(burn.short_window).ref(mesh)} > {threshold}\n"
            f"and {rec.request_errors(burn.short_window).ref(mesh)} * {_seconds_text(burn.short_window)} >= {slo.min_failed_requests:g}",
            burn.for_, burn.severity,
            f"{dialect.title}: {{{{ $labels.destination_service }}}} burns its error budget {burn.factor:g}x too fast",
            f"{where_service} has an error ratio of {{{{ $value | humanizePercentage }}}} over {burn.long_window} and "
            f"{burn.short_window}: {burn.factor:g}x the rate that spends the {slo.availability_percent:g}% SLO's budget in {slo.period}.",
            (("long_window", burn.long_window), ("short_window", burn.short_window)),
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

    if signals.DRY_RUN_DENIED.available(dialect):
        window = rec.query_window(cfg)
        result.append(Alert(
            "MeshPolicyDryRunDenials",
            f"{rec.dry_run_denied(window).ref(mesh)} > 0",
            "5m", "info",
            f"{dialect.title}: a dry-run authorization policy would deny requests to {{{{ $labels.destination_workload }}}}",
            f"A dry-run (shadow) policy at {where_workload} would deny {VALUE} requests/s (last {window}): "
            "enforcing it now would break these callers (`meshobs authz` lists them).",
        ))

    # The proxy's namespace and workload under both names: the exporter's own and the
    # destination_* of the alerts it feeds (Alertmanager inhibits those of the same workload).
    up = promql.selector(dialect.target_up_source(), extra=cfg.selectors.exporter, cluster_label=cfg.cluster_label)
    by_proxy = f"min by ({cfg.cluster_label}, namespace, workload) ({up}) == 0"
    result.append(Alert(
        "MeshExporterTargetDown",
        promql.copy_labels(by_proxy, {"destination_namespace": "namespace", "destination_workload": "workload"}),
        "5m", "warning",
        f"{dialect.title}: the meshobs exporter cannot read proxy {{{{ $labels.workload }}}}",
        "The meshobs exporter has failed to scrape the proxy of {{ $labels.workload }} in {{ $labels.namespace }} "
        "for 5 minutes; its security signals are missing.",
    ))
    # deploy/ imports this module (alert names for the Alertmanager routes), and rules_health builds on
    # its Alert: import the job name and the per-cluster absence late
    from meshobs.render.deploy.common import EXPORTER
    from meshobs.render.rules_health import missing

    # Per cluster, as MeshControlPlaneDown: in a store of many clusters absent() alone fires only
    # when every cluster's exporter is gone, and its alert would carry no cluster.
    exporter_up = f'up{{job="{EXPORTER}"}}'
    result.append(Alert(
        "MeshExporterDown",
        f"{exporter_up} == 0\nor {missing(cfg, dialect, exporter_up, {'job': EXPORTER})}",
        "5m", "critical",
        f"{dialect.title}: the meshobs exporter is down",
        f"Prometheus has not scraped the meshobs exporter (job {EXPORTER}){{{{ with $labels.instance }}}} at {{{{ . }}}}{{{{ end }}}} "
        "for 5 minutes: TLS failures, denial bursts, plaintext and certificate expiry of the proxies it reads are unknown.",
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
    from meshobs import recordings_ambient, recordings_crosscluster, recordings_traffic
    from meshobs.render import rules_ambient, rules_crosscluster, rules_health  # build on this module's Alert

    mesh = dialect.name
    recording = {"groups": [
        _recording_group(f"meshobs-{mesh}-traffic", rec.traffic_rules(cfg, dialect)),
        _recording_group(f"meshobs-{mesh}-security", rec.security_rules(cfg, dialect)),
        _recording_group(f"meshobs-{mesh}-query", rec.query_rules(cfg, dialect)),
        _recording_group(f"meshobs-{mesh}-tcp-and-upstreams", recordings_traffic.rules(cfg, dialect)),
    ]}
    if dialect.ztunnels is not None:
        recording["groups"].append(_recording_group(f"meshobs-{mesh}-ztunnels", recordings_ambient.rules(cfg, dialect)))
    between_clusters = recordings_crosscluster.rules(cfg, dialect)
    if between_clusters:
        recording["groups"].append(_recording_group(f"meshobs-{mesh}-between-clusters", between_clusters))
    every_alert = (alerts(cfg, dialect) + rules_health.alerts(cfg, dialect) + rules_ambient.alerts(cfg, dialect)
                   + rules_crosscluster.alerts(cfg, dialect))
    alerting = {"groups": [{
        "name": f"meshobs-{mesh}-alerts",
        "rules": [_alert_rule(cfg, dialect, alert) for alert in every_alert],
    }]}
    header = f"# Rendered by meshobs for {dialect.title}. Do not edit: change meshobs.yaml and run `meshobs build`.\n"
    return {
        f"alerts/{mesh}/recording-rules.yaml": (header + yamlfmt.dump(recording)).encode(),
        f"alerts/{mesh}/alerting-rules.yaml": (header + yamlfmt.dump(alerting)).encode(),
    }
