"""The upstream, proxy and control-plane alerts of every mesh, run by the real `promtool test rules`
on series written in that mesh's own metric names: each fires on the bad case with the documented
labels and annotations, and stays silent on the healthy and on the low-traffic case."""

from __future__ import annotations

import subprocess

import pytest

from meshobs import yamlfmt
from meshobs.meshes import DIALECTS
from meshobs.render import rules_health
from tests.rules.test_alerts_promtool import CFG, RUNBOOK, _case, rule_files, runbook_headings  # noqa: F401 (fixture)
from tests.rules.traffic import CLUSTER, constant, counter, in_cluster, series
from tests.support.procs import require_binary

NS, CALLER, SVC = "shop", "frontend", "checkout"
CALLER_LABELS = {"source_namespace": NS, "source_workload": CALLER, "destination_service": SVC}

# Which alerts each mesh renders: the others read a signal the mesh does not report (see docs/parity.md).
RENDERED = {
    "istio": set(rules_health.ALERT_NAMES),
    "linkerd": {"MeshNoHealthyUpstream", "MeshUpstreamConnectFailures", "MeshControlPlaneDown"},
    "consul": set(rules_health.ALERT_NAMES),
}


def _expected(mesh: str, name: str, severity: str, labels: dict, summary: str, description: str, cluster: bool = True) -> dict:
    base = {"severity": severity, "mesh": mesh, **({"cluster": CLUSTER} if cluster else {})}
    return {"exp_labels": dict(base, **labels),
            "exp_annotations": {"summary": summary, "description": description, "runbook_url": f"{RUNBOOK}{name.lower()}"}}


def _caller_counter(mesh: str, kind: str, values: str) -> list[dict]:
    """A caller's counter of one kind of upstream failure, as the mesh's proxy names it."""
    if mesh == "istio":
        flags = {"no_healthy": "UH", "connect": "UF", "overflow": "UO"}[kind]
        metric = "istio_tcp_connections_closed_total" if kind == "connect" else "istio_requests_total"
        return [series(metric, {"reporter": "source", "source_workload": CALLER, "source_workload_namespace": NS,
                                "destination_service_name": SVC, "destination_workload_namespace": NS,
                                "response_flags": flags, "response_code": "503"}, values)]
    if mesh == "linkerd":
        assert kind == "connect"
        return [series("tcp_close_total", {"direction": "outbound", "namespace": NS, "deployment": CALLER,
                                           "dst_namespace": NS, "dst_service": SVC, "errno": "ECONNREFUSED",
                                           "classification": "failure"}, values)]
    metric = {"no_healthy": "envoy_cluster_upstream_cx_none_healthy", "connect": "envoy_cluster_upstream_cx_connect_fail",
              "overflow": "envoy_cluster_upstream_rq_pending_overflow"}[kind]
    return [series(metric, {"namespace": NS, "local_cluster": CALLER, "consul_source_service": CALLER,
                            "consul_destination_service": SVC, "envoy_cluster_name": f"{SVC}.default.dc1.internal"}, values)]


_RATES = (
    ("MeshNoHealthyUpstream", "no_healthy", "finds no healthy endpoint of",
     "calls/s failed because no endpoint of {svc} was healthy"),
    ("MeshUpstreamConnectFailures", "connect", "cannot connect to", "connections/s failed to reach {svc}"),
    ("MeshCircuitBreakerOpen", "overflow", "overflows its circuit breaker towards",
     "calls/s were refused by the circuit breaker towards {svc}"),
)


def _balancer(ready: str, pending: str) -> list[dict]:
    """linkerd2-proxy's balancer endpoints of one caller for one service, by state."""
    labels = {"namespace": NS, "deployment": CALLER, "backend_name": SVC, "backend_namespace": NS, "backend_port": "8080"}
    return [series("outbound_http_balancer_endpoints", dict(labels, endpoint_state="ready"), ready),
            series("outbound_http_balancer_endpoints", dict(labels, endpoint_state="pending"), pending)]


def no_ready_endpoint_cases(mesh: str, name: str) -> list[dict]:
    """Linkerd: no call counter, but the balancer's endpoints: none ready while some are known."""
    fires = _expected(mesh, name, "warning", CALLER_LABELS,
                      f"Linkerd: {CALLER} finds no healthy endpoint of {SVC}",
                      f"None of the endpoints of {SVC} known to the proxy of {CALLER} in {NS} has been ready for 5m: "
                      "its calls fail fast.")
    return [
        _case("bad: every endpoint pending", _balancer(constant(0, 15), constant(3, 15)), "15m", name, [fires]),
        _case("healthy", _balancer(constant(2, 15), constant(1, 15)), "15m", name, []),
        _case("blip: endpoints restarting", _balancer("2x8 0x2 2x5", "1x8 3x2 1x5"), "15m", name, []),
        _case("idle: no endpoints known", _balancer(constant(0, 15), constant(0, 15)), "15m", name, []),
    ]


def failure_rate_cases(mesh: str, name: str) -> list[dict]:
    if mesh == "linkerd" and name == "MeshNoHealthyUpstream":
        return no_ready_endpoint_cases(mesh, name)
    _, kind, verb, what = next(r for r in _RATES if r[0] == name)
    title = DIALECTS[mesh].title
    fires = _expected(mesh, name, "warning", CALLER_LABELS, f"{title}: {CALLER} {verb} {SVC}",
                      f"0.5 {what.format(svc=SVC)}, from {CALLER} in {NS}, over the last 5m (threshold 0.05/s).")
    return [
        _case("bad", _caller_counter(mesh, kind, counter((0.5, 15))), "15m", name, [fires]),
        _case("healthy", _caller_counter(mesh, kind, constant(0, 15)), "15m", name, []),
        _case("low traffic: a failure now and then", _caller_counter(mesh, kind, counter((0.01, 15))), "15m", name, []),
    ]


def _ejected(mesh: str, values: str) -> list[dict]:
    if mesh == "istio":
        return [series("envoy_cluster_outlier_detection_ejections_active", {
            "namespace": NS, "pod": f"{CALLER}-7d4b9c-x2x7q", "cluster_name": f"outbound|8080||{SVC}.{NS}.svc.cluster.local"}, values)]
    return [series("envoy_cluster_outlier_detection_ejections_active", {
        "namespace": NS, "local_cluster": CALLER, "consul_source_service": CALLER, "consul_destination_service": SVC}, values)]


def ejection_cases(mesh: str, name: str) -> list[dict]:
    title = DIALECTS[mesh].title
    fires = _expected(mesh, name, "warning", CALLER_LABELS, f"{title}: endpoints of {SVC} are ejected by {CALLER}",
                      f"1 endpoints of {SVC} have been ejected by outlier detection in the proxy of {CALLER} in {NS} "
                      "for 5m: they failed its calls.")
    return [
        _case("bad", _ejected(mesh, constant(1, 15)), "15m", name, [fires]),
        _case("healthy", _ejected(mesh, constant(0, 15)), "15m", name, []),
        _case("blip: ejected for two minutes", _ejected(mesh, "0x8 1x2 0x5"), "15m", name, []),
    ]


def _live(mesh: str, values: str) -> list[dict]:
    if mesh == "istio":
        return [series("envoy_server_live", {"namespace": NS, "pod": f"{SVC}-7d4b9c-x2x7q"}, values)]
    return [series("envoy_server_live", {"namespace": NS, "local_cluster": SVC, "consul_source_service": SVC}, values)]


def proxy_not_live_cases(mesh: str, name: str) -> list[dict]:
    title = DIALECTS[mesh].title
    fires = _expected(mesh, name, "warning", {"namespace": NS, "workload": SVC}, f"{title}: a proxy of {SVC} is not live",
                      f"A sidecar proxy of {SVC} in {NS} has not been live (initializing or draining) for 5m: it serves no traffic.")
    return [
        _case("bad: draining", _live(mesh, constant(0, 15)), "15m", name, [fires]),
        _case("healthy", _live(mesh, constant(1, 15)), "15m", name, []),
        _case("blip: a restart", _live(mesh, "1x8 0x2 1x5"), "15m", name, []),
    ]


def _control_plane(mesh: str, values: str, *components: str) -> list[dict]:
    if mesh == "istio":
        return [series("istio_build", {"component": "pilot", "tag": "1.24.2", "namespace": "istio-system"}, values)]
    if mesh == "linkerd":
        return [series("process_start_time_seconds", {"namespace": "linkerd", "component": c}, values) for c in components]
    return [series("consul_autopilot_healthy", {"namespace": "consul", "pod": "consul-server-0"}, values)]


OTHER_CLUSTER = "c2"


def _proxies(mesh: str) -> list[dict]:
    """A cluster's data plane: the exporter reading one of its proxies."""
    return [series("meshobs_target_up", {"mesh": mesh, "namespace": NS, "workload": SVC}, constant(1, 15))]


def control_plane_cases(mesh: str, name: str) -> list[dict]:
    title = DIALECTS[mesh].title

    def fires(component: str | None, labels: dict, cluster: bool = False) -> dict:
        summary = f"{title}: control plane down" + (f" ({component})" if component else "")
        part = f" component {component}" if component else ""
        return _expected(mesh, name, "critical", labels, summary,
                         f"{title}'s control plane{part} has been missing or unhealthy for 5m: proxies get no new "
                         "configuration, endpoints or certificates.", cluster=cluster)

    if mesh == "istio":
        healthy, gone, gone_labels = _control_plane(mesh, constant(1, 15)), _control_plane(mesh, "1x2 _x13"), {"component": "pilot"}
        cases = [
            _case("bad: istiod gone", gone, "15m", name, [fires("pilot", gone_labels)]),
            _case("healthy", healthy, "15m", name, []),
            _case("blip: a rollout", _control_plane(mesh, "1x8 _x2 1x5"), "15m", name, []),
        ]
        component = "pilot"
    elif mesh == "linkerd":
        healthy = _control_plane(mesh, constant(1, 15), "identity", "destination")
        gone = _control_plane(mesh, constant(1, 15), "destination") + _control_plane(mesh, "1x2 _x13", "identity")
        gone_labels, component = {"component": "identity", "namespace": "linkerd"}, "identity"
        cases = [
            _case("bad: identity gone", gone, "15m", name, [fires("identity", gone_labels)]),
            _case("healthy", healthy, "15m", name, []),
            _case("blip: a rollout", _control_plane(mesh, "1x8 _x2 1x5", "identity", "destination"), "15m", name, []),
        ]
    else:
        healthy, gone, gone_labels, component = _control_plane(mesh, constant(1, 15)), _control_plane(mesh, "1x2 _x13"), {}, None
        cases = [
            _case("bad: no leader", gone, "15m", name, [fires(None, {})]),
            _case("bad: autopilot unhealthy", _control_plane(mesh, "1x5 0x10"), "15m", name, [fires(None, {}, cluster=True)]),
            _case("healthy", healthy, "15m", name, []),
            _case("blip: a leader election", _control_plane(mesh, "1x8 _x2 1x5"), "15m", name, []),
        ]
    # One store, two clusters: c1 healthy, c2's control plane goes while its proxies stay
    c1 = healthy + _proxies(mesh)
    return cases + [
        _case("bad: one of two clusters loses its control plane", c1 + in_cluster(OTHER_CLUSTER, gone + _proxies(mesh)),
              "15m", name, [fires(component, dict(gone_labels, cluster=OTHER_CLUSTER))]),
        _case("healthy: a cluster without proxies runs no control plane", c1 + in_cluster(OTHER_CLUSTER, gone), "15m", name, []),
    ]


SCENARIOS = {
    "MeshNoHealthyUpstream": failure_rate_cases,
    "MeshUpstreamConnectFailures": failure_rate_cases,
    "MeshCircuitBreakerOpen": failure_rate_cases,
    "MeshOutlierEjections": ejection_cases,
    "MeshProxyNotLive": proxy_not_live_cases,
    "MeshControlPlaneDown": control_plane_cases,
}


def test_every_health_alert_has_scenarios():
    """Every upstream, proxy and control-plane alert is covered by a promtool scenario."""
    assert set(SCENARIOS) == set(rules_health.ALERT_NAMES)


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
def test_each_mesh_renders_the_health_alerts_it_can_answer(mesh):
    """A mesh gets each health alert whose signal it reports, and no other."""
    rendered = {a.name for a in rules_health.alerts(CFG, DIALECTS[mesh])}
    assert rendered == RENDERED[mesh]


@pytest.mark.parametrize("mesh, alertname", [(m, a) for m in sorted(DIALECTS) for a in rules_health.ALERT_NAMES
                                              if a in RENDERED[m]])
def test_health_alert_fires_on_bad_and_stays_silent_otherwise(mesh, alertname, rule_files, tmp_path):  # noqa: F811
    """promtool agrees with each scenario: bad fires with exact labels and annotations, the rest stay silent."""
    test_file = tmp_path / f"{mesh}-{alertname}.yaml"
    test_file.write_text(yamlfmt.dump({
        "rule_files": [str(p) for p in sorted(rule_files[mesh])],
        "evaluation_interval": "1m",
        "tests": SCENARIOS[alertname](mesh, alertname),
    }))
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(test_file)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr




def test_every_health_alert_has_a_runbook_section():
    """docs/runbooks.md has a section for each health alert, the anchor its runbook_url points at."""
    assert set(rules_health.ALERT_NAMES) <= runbook_headings()
