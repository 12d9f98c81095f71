"""Five dashboards per mesh, written once against the signal model.

Panels read recorded series (meshobs/recordings.py) where a signal is reused by alerts, and
ask the signal model for live queries (`$__rate_interval`) where a panel drills down by
source, code or reason. No panel names a mesh's metric.
"""

from __future__ import annotations

from meshobs import promql, signals
from meshobs import recordings as rec
from meshobs import recordings_traffic
from meshobs.config import Config
from meshobs.meshes.base import Dialect
from meshobs.promql import Filters, Query
from meshobs.render import between_clusters
from meshobs.render import dashboards_traffic as more
from meshobs.render import grafana
from meshobs.render.grafana import BAD_HIGH, GOOD_HIGH, RATE, Panel, Row, Variable
from meshobs.render.grafana import Query as Q

FAILED = ("Failed: answered with 5xx, a gRPC call with a status other than OK (HTTP 200), or a call no pod answered "
          "(seen by the callers only).")


class _Context:
    """What every panel of one mesh's dashboards needs: config, dialect, variable filters."""

    def __init__(self, cfg: Config, dialect: Dialect):
        self.cfg = cfg
        self.dialect = dialect
        self.mesh = dialect.name
        self.cluster = cfg.cluster_label
        self.extra = rec.extra_matchers(cfg, dialect)

    def filters(self, **variables: str) -> Filters:
        """Regex filters on normalized labels from dashboard variables (`$name`)."""
        regex = {self.cluster: "$cluster"}
        regex.update({label: f"${var}" for label, var in variables.items()})
        return Filters(regex=regex)

    def live(self, signal: signals.Signal, by: tuple[str, ...], quantile: float | None = None, window: str = RATE,
             total: bool = False, **variables: str) -> str:
        query = Query(by=by, window=window, filters=self.filters(**variables), cluster_label=self.cluster)
        return signal.expr(self.dialect, query, quantile=quantile, extra=self.extra, total=total)

    def ref(self, recorded: rec.Recorded, fixed: dict[str, str] | None = None, **variables: str) -> str:
        """A recorded series filtered by dashboard variables (label=variable name) and fixed values."""
        matchers = dict(fixed or {})
        matchers[self.cluster] = "~$cluster"
        matchers.update({label: f"~${var}" for label, var in variables.items()})
        return recorded.ref(self.mesh, **matchers)

    def variable(self, name: str, label: str, recorded: rec.Recorded, value_label: str, **depends: str) -> Variable:
        return Variable(name, label, f"label_values({self.ref(recorded, **depends)}, {value_label})")

    @property
    def traffic_window(self) -> str:
        return rec.dashboard_window(self.cfg)

    @property
    def cluster_variable(self) -> Variable:
        return Variable("cluster", "Cluster", f"label_values({recordings_traffic.any_traffic(self.cfg, self.traffic_window).ref(self.mesh)}, {self.cluster})")

    def dashboard(self, slug: str, title: str, description: str, variables: tuple[Variable, ...], rows: tuple[Row, ...],
                  cluster_variable: Variable | None = None) -> tuple[str, bytes]:
        """`cluster_variable`: where the dashboard's clusters are not those with meshed traffic (a data plane's own)."""
        board = grafana.Dashboard(
            uid=f"meshobs-{self.mesh}-{slug}",
            title=f"{self.dialect.title} / {title}",
            description=description,
            tags=("meshobs", f"meshobs-{self.mesh}", self.mesh),
            variables=(cluster_variable or self.cluster_variable,) + variables,
            rows=rows,
            link_tag=f"meshobs-{self.mesh}",
            default_datasource=self.cfg.datasource,
        )
        return f"dashboards/{self.mesh}/{slug}.json", grafana.render(board)


def _total(expr: str) -> str:
    """The sum of a rate as one number, 0 where nothing has series."""
    return promql.or_value(f"sum({expr})", 0)


def _success_ratio(errors: str, requests: str) -> str:
    """1 on a mesh that never failed or is idle; never NaN."""
    return f"1 - ({promql.ratio_of_sums(errors, requests, 0)})"


def _overview(c: _Context) -> tuple[str, bytes]:
    w = c.traffic_window
    a = c.cfg.alerts
    requests, errors = c.ref(rec.requests(w)), c.ref(rec.request_errors(w))
    workloads = c.ref(rec.workload_requests(a.plaintext.window))
    stats = (
        Panel("Requests", "stat", (Q(_total(requests)),), unit="reqps", width=4, height=4,
              description="Requests per second received by all meshed services."),
        Panel("Success ratio", "stat", (Q(_success_ratio(errors, requests)),), unit="percentunit",
              width=4, height=4, thresholds=GOOD_HIGH,
              description=f"Share of requests that did not fail. {FAILED}"),
        Panel("mTLS coverage", "stat",
              (Q(promql.ratio_of_sums(c.ref(rec.mtls_requests(a.plaintext.window)), workloads, 1)),),
              unit="percentunit", width=4, height=4, thresholds=GOOD_HIGH,
              description="Share of requests that arrived over mutual TLS."),
        Panel("Authorization denials", "stat", (Q(_total(c.ref(rec.authz_denied(a.unauthorized_burst.window)))),), unit="reqps",
              width=4, height=4, thresholds=BAD_HIGH, description="Requests refused by authorization policies."),
        Panel("TLS handshake failures", "stat", (Q(_total(c.ref(rec.tls_failures(a.mtls_failure.window)))),), unit="ops",
              width=4, height=4, thresholds=BAD_HIGH, description="Failed mTLS handshakes per second, all reasons."),
        Panel("Firing alerts", "stat", (Q(promql.or_value(f'count(ALERTS{{alertstate="firing", mesh="{c.mesh}"}})', 0)),),
              width=4, height=4, thresholds=((None, "green"), (1, "red")), description="meshobs alerts firing now."),
    )
    services = (
        Panel("Requests by service", "timeseries", (Q(requests, "{{destination_service}}.{{destination_namespace}}"),),
              unit="reqps"),
        Panel("5xx ratio by service", "timeseries", (Q(c.ref(rec.error_ratio(w)), "{{destination_service}}.{{destination_namespace}}"),),
              unit="percentunit", description=FAILED),
        Panel("p99 latency by service", "timeseries",
              (Q(c.ref(rec.latency(c.cfg.alerts.latency.window), {"quantile": "0.99"}), "{{destination_service}}.{{destination_namespace}}"),),
              unit="s"),
        Panel("Highest 5xx ratios", "bargauge", (Q(f"topk(10, {c.ref(rec.error_ratio(w))})", "{{destination_service}}.{{destination_namespace}}", instant=True),),
              unit="percentunit", max_value=1, thresholds=BAD_HIGH),
    )
    return c.dashboard("overview", "Overview", "Traffic, errors, latency and security of the whole mesh.", (),
                       (Row("Mesh at a glance", stats), Row("Services", services)) + more.overview_rows(c)
                       + between_clusters.rows(c))


def _service(c: _Context) -> tuple[str, bytes]:
    w = c.traffic_window
    sel = dict(destination_namespace="namespace", destination_service="service")
    by_service = (c.cluster, "destination_namespace", "destination_service")
    slo = c.cfg.slo
    budget = 1 - slo.availability_percent / 100
    fastest = slo.burn_rates[0]
    golden = (
        Panel("Requests", "stat", (Q(_total(c.ref(rec.requests(w), **sel))),), unit="reqps", width=6, height=4),
        Panel("5xx ratio", "stat",
              (Q(promql.ratio_of_sums(c.ref(rec.request_errors(w), **sel), c.ref(rec.requests(w), **sel), 0)),),
              unit="percentunit", width=6, height=4, thresholds=BAD_HIGH, description=FAILED),
        Panel("p99 latency", "stat", (Q(f"max({c.ref(rec.latency(c.cfg.alerts.latency.window), {'quantile': '0.99'}, **sel)})"),),
              unit="s", width=6, height=4),
        Panel(f"Error budget burn ({fastest.long_window})", "stat",
              (Q(promql.or_value(f"max({c.ref(rec.error_ratio(fastest.long_window), **sel)}) / {budget:g}", 0)),),
              unit="x", width=6, height=4, thresholds=((None, "green"), (1, "orange"), (fastest.factor, "red")),
              description=f"How fast the {slo.availability_percent:g}% SLO's error budget burns: 1 spends it in exactly "
                          f"{slo.period}; {fastest.factor:g} pages."),
    )
    traffic = (
        Panel("Requests by response code", "timeseries",
              (Q(c.live(signals.REQUESTS, by_service + ("code",), **sel), "{{code}}"),), unit="reqps"),
        Panel("5xx ratio", "timeseries", (Q(c.ref(rec.error_ratio(w), **sel), "{{destination_service}}"),), unit="percentunit",
              description=FAILED),
        Panel("Latency", "timeseries",
              tuple(Q(c.live(signals.REQUEST_DURATION, by_service, quantile=q, **sel), f"p{q * 100:g} {{{{destination_service}}}}")
                    for q in rec.QUANTILES), unit="s"),
        Panel("Requests by source workload", "timeseries",
              (Q(c.live(signals.EDGE_REQUESTS, (c.cluster,) + signals.EDGE, **sel), "{{source_workload}}.{{source_namespace}}"),),
              unit="reqps"),
    )
    return c.dashboard(
        "service", "Service", "Golden signals of one destination service.",
        (c.variable("namespace", "Namespace", rec.requests(w), "destination_namespace"),
         c.variable("service", "Service", rec.requests(w), "destination_service", destination_namespace="namespace")),
        (Row("Golden signals", golden), Row("Traffic", traffic)) + more.service_rows(c) + between_clusters.service_rows(c, sel),
    )


def _workload(c: _Context) -> tuple[str, bytes]:
    w = c.cfg.alerts.plaintext.window
    sel = dict(destination_namespace="namespace", destination_workload="workload")
    by_workload = (c.cluster,) + signals.WORKLOAD
    traffic = (
        Panel("Inbound requests", "timeseries", (Q(c.live(signals.INBOUND_REQUESTS, by_workload, **sel), "{{destination_workload}}"),),
              unit="reqps"),
        Panel("Inbound 5xx", "timeseries", (Q(c.live(signals.INBOUND_ERRORS, by_workload, **sel), "{{destination_workload}}"),),
              unit="reqps"),
    )
    security = (
        Panel("mTLS share", "timeseries", (Q(c.ref(rec.mtls_ratio(w), **sel), "{{destination_workload}}"),),
              unit="percentunit", max_value=1, min_value=0),
        Panel("Authorization denials", "timeseries", (Q(c.live(signals.AUTHZ_DENIED, by_workload, **sel), "{{destination_workload}}"),),
              unit="reqps"),
        Panel("TLS handshake failures by reason", "timeseries",
              (Q(c.live(signals.TLS_FAILURES, by_workload + ("reason",), **sel), "{{reason}}"),), unit="ops"),
        Panel("Certificate expiry", "table",
              (Q(f"{c.ref(rec.CERT_EXPIRY, **sel)} - time()", instant=True),), unit="s"),
    )
    return c.dashboard(
        "workload", "Workload", "Inbound traffic and security of one workload.",
        (c.variable("namespace", "Namespace", recordings_traffic.any_workload_traffic(c.cfg, w), "destination_namespace"),
         c.variable("workload", "Workload", recordings_traffic.any_workload_traffic(c.cfg, w), "destination_workload",
                    destination_namespace="namespace")),
        (Row("Traffic", traffic), Row("Security", security)) + more.workload_rows(c),
    )


def _security(c: _Context) -> tuple[str, bytes]:
    a = c.cfg.alerts
    sel = dict(destination_namespace="namespace")
    by_workload = (c.cluster,) + signals.WORKLOAD
    workloads = c.ref(rec.workload_requests(a.plaintext.window), **sel)
    glance = (
        Panel("mTLS coverage", "stat",
              (Q(promql.ratio_of_sums(c.ref(rec.mtls_requests(a.plaintext.window), **sel), workloads, 1)),),
              unit="percentunit", width=4, height=4, thresholds=GOOD_HIGH),
        Panel("Plaintext requests", "stat", (Q(_total(c.ref(rec.plaintext(a.plaintext.window), **sel))),),
              unit="reqps", width=4, height=4, thresholds=BAD_HIGH),
        Panel("TLS failures", "stat", (Q(_total(c.ref(rec.tls_failures(a.mtls_failure.window), **sel))),),
              unit="ops", width=4, height=4, thresholds=BAD_HIGH),
        Panel("Authorization denials", "stat", (Q(_total(c.ref(rec.authz_denied(a.unauthorized_burst.window), **sel))),),
              unit="reqps", width=4, height=4, thresholds=BAD_HIGH),
        Panel("Denial bursts active", "stat", (Q(promql.or_value(c.live(signals.BURST_ACTIVE, (), **sel), 0)),),
              width=4, height=4, thresholds=((None, "green"), (1, "red"))),
        Panel("Soonest certificate expiry", "stat", (Q(f"min({c.ref(rec.CERT_EXPIRY, **sel)}) - time()"),),
              unit="s", width=4, height=4, thresholds=((None, "red"), (86400, "orange"), (604800, "green"))),
    )
    tls = (
        Panel("mTLS coverage by destination", "timeseries",
              (Q(c.ref(rec.mtls_ratio(c.cfg.alerts.plaintext.window), **sel), "{{destination_workload}}.{{destination_namespace}}"),),
              unit="percentunit", max_value=1, min_value=0),
        Panel("TLS handshake failures by reason", "timeseries",
              (Q(c.live(signals.TLS_FAILURES, (c.cluster, "reason"), **sel), "{{reason}}"),), unit="ops"),
        Panel("TLS handshake failures by destination and reason", "table",
              (Q(c.live(signals.TLS_FAILURES, by_workload + ("reason",), **sel), instant=True),), unit="ops"),
        Panel("Plaintext traffic by destination", "timeseries",
              (Q(c.live(signals.PLAINTEXT_REQUESTS, by_workload, **sel), "{{destination_workload}}.{{destination_namespace}}"),),
              unit="reqps"),
    )
    # The Namespace variable lists the workloads' namespaces: it filters edges only where they name the same kind
    edge_sel, edge_scope = sel, ""
    if not c.dialect.edges_in_workload_namespaces:
        edge_sel = {}
        edge_scope = (f"Every namespace: {c.dialect.title} names a called service by its own namespace, "
                      "not the Kubernetes namespace the Namespace variable lists.")
    authz = (
        Panel("Authorization denials by destination", "timeseries",
              (Q(c.live(signals.AUTHZ_DENIED, by_workload, **sel), "{{destination_workload}}.{{destination_namespace}}"),),
              unit="reqps"),
        Panel("403 responses by source and destination", "timeseries",
              (Q(c.live(signals.EDGE_FORBIDDEN, (c.cluster,) + signals.EDGE, **edge_sel),
                 "{{source_workload}}.{{source_namespace}} → {{destination_service}}.{{destination_namespace}}"),),
              unit="reqps", description=edge_scope),
        Panel("Denied pairs", "table",
              (Q(c.live(signals.EDGE_FORBIDDEN, (c.cluster,) + signals.EDGE, window="$__range", total=True, **edge_sel),
                 instant=True),),
              description=f"403 responses in the time range, by source and destination.{edge_scope and ' ' + edge_scope}"),
        Panel("Certificates expiring soonest", "table",
              (Q(f"bottomk(20, {c.ref(rec.CERT_EXPIRY, **sel)} - time())", instant=True),), unit="s"),
    )
    rows = [Row("Security at a glance", glance), Row("Transport security", tls), Row("Authorization and certificates", authz)]
    if signals.DRY_RUN_DENIED.available(c.dialect):
        rows.append(_would_be_denied(c, sel))
    return c.dashboard(
        "security", "Security", "mTLS coverage, TLS handshake failures, authorization denials, plaintext traffic and certificate expiry.",
        (c.variable("namespace", "Namespace", rec.workload_requests(c.cfg.alerts.plaintext.window), "destination_namespace"),),
        tuple(rows),
    )


def _would_be_denied(c: _Context, sel: dict[str, str]) -> Row:
    """What dry-run (shadow) policies would deny if enforced: the check before a rollout."""
    w = rec.query_window(c.cfg)
    legend = "{{destination_workload}}.{{destination_namespace}}"
    panels = [Panel("Would be denied by destination", "timeseries", (Q(c.ref(rec.dry_run_denied(w), **sel), legend),),
                    unit="reqps", description="Requests a dry-run (shadow, audit) authorization policy would deny if enforced.")]
    if signals.DRY_RUN_ALLOWED.available(c.dialect):  # Linkerd's audit mode flags would-be denials only
        panels.append(Panel("Would be allowed by destination", "timeseries", (Q(c.ref(rec.dry_run_allowed(w), **sel), legend),),
                            unit="reqps", description="Requests a dry-run (shadow) authorization policy would allow."))
    return Row("Would be denied (dry-run policies)", tuple(panels))


def _control_plane(c: _Context) -> tuple[str, bytes]:
    everything = (c.cluster,)
    panels = []
    cp = (
        (signals.CONTROL_PLANE_UP, "short", "stat"),
        (signals.CONNECTED_PROXIES, "short", "stat"),
        (signals.CA_EXPIRY, "dateTimeAsIso", "stat"),
        (signals.CONFIG_PUSHES, "ops", "timeseries"),
        (signals.CERT_ISSUANCE_ERRORS, "ops", "timeseries"),
    )
    for signal, unit, kind in cp:
        if signal.available(c.dialect):
            panels.append(Panel(signal.title, kind, (Q(c.live(signal, everything), signal.title),), unit=unit,
                                width=8 if kind == "stat" else 12, height=4 if kind == "stat" else 8))
    if signals.PUSH_DURATION.available(c.dialect):
        panels.append(Panel("Push / convergence time p99", "timeseries",
                            (Q(c.live(signals.PUSH_DURATION, everything, quantile=0.99), "p99"),), unit="s"))
    if signals.CONFIG_REJECTIONS.available(c.dialect):
        window = c.cfg.alerts.config_rejected.window
        panels.append(Panel(f"Configuration rejected ({window})", "timeseries",
                            (Q(_total(c.ref(rec.config_rejections(window))), "rejected"),), unit="short"))
    exporter = (
        Panel("Proxies scraped", "timeseries", (Q(c.live(signals.TARGET_UP, (c.cluster, "destination_namespace")), "{{destination_namespace}}"),)),
        Panel("Scrape errors by reason", "timeseries",
              (Q(promql.or_value(c.live(signals.SCRAPE_ERRORS, (c.cluster, 'reason')), 0), "{{reason}}"),), unit="ops"),
    )
    return c.dashboard("control-plane", "Control plane", "Health of the control plane and of the meshobs exporter.", (),
                       (Row("Control plane", tuple(panels)), Row("meshobs exporter", exporter)) + more.control_plane_rows(c))


DASHBOARDS = (_overview, _service, _workload, _security, _control_plane, more.proxy)


def render(cfg: Config, dialect: Dialect) -> dict[str, bytes]:
    context = _Context(cfg, dialect)
    return dict(build(context) for build in DASHBOARDS)
