"""Istio ambient's ztunnel alerts, run by the real `promtool test rules` on series in ztunnel's own
names and labels (tests/rules/ambient_traffic.py): each fires on the bad case with the documented
labels and annotations, and stays silent on the healthy and the low-traffic ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshobs.meshes import DIALECTS
from meshobs.render import rules_ambient
from tests.rules import ambient_traffic as amb
from tests.rules.test_alerts_promtool import CFG, _case, rule_files, runbook_headings  # noqa: F401 (fixture)
from tests.rules.test_alerts_promtool import run_promtool as run_rule_tests
from tests.rules.test_health_alerts_promtool import _expected
from tests.rules.traffic import CLUSTER, constant, counter
from tests.support.ambientdata import ACCOUNTS, LEGACY, POSTGRES, L4, WEB

TITLE = "Istio"


def run_promtool(rule_files: dict, tmp_path: Path, name: str, tests: list[dict]) -> None:
    """`promtool test rules` on Istio's rendered rule files; fails with promtool's output."""
    run_rule_tests(rule_files["istio"], tmp_path, name, tests)


UNREACHABLE = "every ambient pod of the node is unreachable (ztunnel carries all their traffic)"


def ztunnel_down(name: str) -> list[dict]:
    down = _expected("istio", name, "critical", {"node": "node-b", "basis": "down"},
                     f"{TITLE}: the ztunnel of node node-b is down",
                     f"Prometheus has failed to scrape the ztunnel of node node-b for 2m: {UNREACHABLE}.")
    gone = _expected("istio", name, "critical", {"node": "node-b", "basis": "gone"},
                     f"{TITLE}: the ztunnel of node node-b is gone",
                     f"Node node-b had a ztunnel in the last 15m and has none now: {UNREACHABLE}, "
                     "unless the node itself was removed.")
    healthy_a = [amb.up("node-a", constant(1, 25))]
    return [
        _case("bad: node-b's ztunnel fails its scrapes", healthy_a + [amb.up("node-b", "1x5 0x10")], "15m", name, [down]),
        # its last sample is still read for 5m (Prometheus's lookback), then `for` runs
        _case("bad: node-b's ztunnel pod is gone (not rescheduled)", healthy_a + [amb.up("node-b", "1x5 _x20")], "15m", name,
              [gone]),
        _case("healthy: both ztunnels scraped", healthy_a + [amb.up("node-b", constant(1, 25))], "15m", name, []),
        _case("healthy: a rolling restart, one failed scrape", healthy_a + [amb.up("node-b", "1x5 0x1 1x10")], "15m", name, []),
        # a pod named like ztunnel outside istio-system is not a ztunnel
        _case("healthy: a failing pod called ztunnel-x in an application namespace",
              healthy_a + [dict(amb.up("node-b", constant(0, 25)),
                                series=amb.up("node-b", "")["series"].replace('"istio-system"', '"shop"'))],
              "15m", name, []),
    ]


def xds_failures(name: str) -> list[dict]:
    fires = _expected("istio", name, "warning", {"node": "node-a", "reason": "ConnectionError"},
                      f"{TITLE}: the ztunnel of node node-a loses its xDS stream to istiod",
                      "The ztunnel of node node-a ended 0.05 xDS streams/s to istiod with ConnectionError over the last 5m "
                      "(failures: ConnectionError, Error): it keeps its last configuration, so new pods, policies and "
                      "endpoints do not reach it.")
    terminations = lambda reason, values: [amb.ztunnel_own("istio_xds_connection_terminations_total", "node-a", values,
                                                           reason=reason)]
    return [
        _case("bad: istiod unreachable, ConnectionError every 20s", terminations("ConnectionError", counter((0.05, 20))),
              "20m", name, [fires]),
        _case("healthy: streams recycled by istiod (Reconnect)", terminations("Reconnect", counter((0.05, 20))), "20m", name,
              []),
        _case("low traffic: one failed stream", terminations("Error", "0x10 1x10"), "20m", name, []),
    ]


def identity_failures(name: str) -> list[dict]:
    fires = _expected("istio", name, "warning", {"node": "node-a", "response_flags": "IDENTITY_ERROR"},
                      f"{TITLE}: the ztunnel of node node-a fails connections for identity reasons",
                      "The ztunnel of node node-a closed 0.5 connections/s with IDENTITY_ERROR over the last 5m "
                      "(one of TLS_FAILURE, IDENTITY_ERROR, CERT_REVOKED): it cannot get or present a workload "
                      "certificate, or a peer's is refused.")
    closed = lambda flags, values: [amb.ztunnel("istio_tcp_connections_closed_total", L4(WEB, ACCOUNTS, ACCOUNTS, 0, flags=flags),
                                                "source", values)]
    return [
        _case("bad: web's ztunnel cannot get its certificate", closed("-", counter((5, 20))) + closed("IDENTITY_ERROR", counter((0.5, 20))),
              "20m", name, [fires]),
        _case("healthy: denials and refused connections are not identity failures",
              closed("-", counter((5, 20))) + closed("DENY", counter((0.5, 20))) + closed("CONNECT", counter((0.5, 20))),
              "20m", name, []),
        _case("low traffic: one failed handshake", closed("-", counter((5, 20))) + closed("TLS_FAILURE", "0x10 1x10"), "20m",
              name, []),
    ]


def _caller_expected(name: str, verb: str, what: str) -> dict:
    return _expected("istio", name, "warning",
                     {"source_namespace": WEB.namespace, "source_workload": WEB.name, "destination_service": ACCOUNTS.name},
                     f"{TITLE}: {WEB.name} {verb} {ACCOUNTS.name}",
                     f"0.5 {what} {ACCOUNTS.name}, from {WEB.name} in {WEB.namespace}, over the last 5m (threshold 0.05/s).")


def connect_failures(name: str) -> list[dict]:
    """An ambient client has no sidecar: its failed connections are its ztunnel's `reporter="source"` flags."""
    fires = _caller_expected(name, "cannot connect to", "connections/s failed to reach")
    closed = lambda flags, values: [amb.ztunnel("istio_tcp_connections_closed_total",
                                                L4(WEB, ACCOUNTS, ACCOUNTS, 0, flags=flags), "source", values)]
    return [
        _case("bad (ambient): web's ztunnel cannot connect to accounts (CONNECT)",
              closed("-", counter((5, 15))) + closed("CONNECT", counter((0.5, 15))), "15m", name, [fires]),
        _case("bad (ambient): HBONE to accounts times out (NETWORK_POLICY)",
              closed("-", counter((5, 15))) + closed("NETWORK_POLICY", counter((0.5, 15))), "15m", name, [fires]),
        _case("healthy (ambient): denials are not connection failures",
              closed("-", counter((5, 15))) + closed("DENY", counter((0.5, 15))), "15m", name, []),
        _case("low traffic (ambient): a refused connection now and then",
              closed("-", counter((5, 15))) + closed("CONNECT", counter((0.01, 15))), "15m", name, []),
    ]


def no_healthy_upstream(name: str) -> list[dict]:
    """A waypoint that finds no healthy pod of accounts flags UH on its series for web's calls."""
    fires = _caller_expected(name, "finds no healthy endpoint of", "calls/s failed because no endpoint of")
    fires["exp_annotations"]["description"] = fires["exp_annotations"]["description"].replace(
        f"of {ACCOUNTS.name},", f"of {ACCOUNTS.name} was healthy,")
    unanswered = lambda values: [dict(amb.waypoint(WEB, ACCOUNTS, "503", values), series=amb.waypoint(
        WEB, ACCOUNTS, "503", "")["series"].replace('response_flags="-"', 'response_flags="UH"'))]
    return [
        _case("bad (ambient): the waypoint finds no healthy pod of accounts", unanswered(counter((0.5, 15))), "15m", name,
              [fires]),
        _case("low traffic (ambient): now and then", unanswered(counter((0.01, 15))), "15m", name, []),
    ]


# the alerts of every mesh whose ambient side is not tested in test_alerts_promtool.py
AMBIENT_HEALTH = {"MeshUpstreamConnectFailures": connect_failures, "MeshNoHealthyUpstream": no_healthy_upstream}


@pytest.mark.parametrize("alertname", sorted(AMBIENT_HEALTH))
def test_upstream_alert_covers_ambient_clients(alertname, rule_files, tmp_path):  # noqa: F811
    """An ambient client's upstream failures, from its ztunnel or its server's waypoint, fire the upstream alerts."""
    run_promtool(rule_files, tmp_path, f"ambient-{alertname}", AMBIENT_HEALTH[alertname](alertname))


SCENARIOS = {
    "MeshZtunnelDown": ztunnel_down,
    "MeshZtunnelXdsFailures": xds_failures,
    "MeshZtunnelIdentityFailures": identity_failures,
}


def test_every_ztunnel_alert_has_scenarios():
    """Every ztunnel alert is covered by a promtool scenario."""
    assert set(SCENARIOS) == set(rules_ambient.ALERT_NAMES)


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
def test_only_a_mesh_with_ztunnels_renders_them(mesh):
    """Istio renders the ztunnel alerts; Linkerd and Consul, which have no ztunnel, none."""
    rendered = {a.name for a in rules_ambient.alerts(CFG, DIALECTS[mesh])}
    assert rendered == (set(rules_ambient.ALERT_NAMES) if mesh == "istio" else set())




@pytest.mark.parametrize("alertname", rules_ambient.ALERT_NAMES)
def test_ztunnel_alert_fires_on_bad_and_stays_silent_otherwise(alertname, rule_files, tmp_path):  # noqa: F811
    """promtool agrees with each scenario: bad fires with exact labels and annotations, the rest stay silent."""
    run_promtool(rule_files, tmp_path, f"istio-{alertname}", SCENARIOS[alertname](alertname))


def test_every_ztunnel_alert_has_a_runbook_section():
    """docs/runbooks.md has a section for each ztunnel alert, the anchor its runbook_url points at."""
    assert set(rules_ambient.ALERT_NAMES) <= runbook_headings()


def test_mtls_coverage_counts_the_plaintext_connections_of_ambient_workloads(rule_files, tmp_path):  # noqa: F811
    """An ambient workload with no waypoint has no requests: its mTLS coverage is that of the connections its
    ztunnel accepted (HBONE against `unknown`), and one behind a waypoint keeps its requests."""
    opened = lambda edge, values: amb.ztunnel("istio_tcp_connections_opened_total", edge, "destination", values)
    ratio = "destination_workload:mesh_requests_mtls:ratio_rate5m"
    sample = lambda workload, value: {"labels": f'{ratio}{{cluster="{CLUSTER}", destination_namespace="bank", '
                                                f'destination_workload="{workload.name}", mesh="istio"}}', "value": value}
    run_promtool(rule_files, tmp_path, "coverage", [{
        "interval": "1m",
        "input_series": [opened(L4(ACCOUNTS, POSTGRES, POSTGRES, 0), counter((1.5, 15))),
                         opened(L4(LEGACY, POSTGRES, POSTGRES, 0, mtls=False), counter((0.5, 15))),
                         amb.waypoint(WEB, ACCOUNTS, "200", counter((4, 15))),
                         opened(L4(WEB, ACCOUNTS, ACCOUNTS, 0), counter((9, 15)))],
        "promql_expr_test": [{"expr": f'{ratio}{{destination_workload=~"{POSTGRES.name}|{ACCOUNTS.name}"}}', "eval_time": "15m",
                              "exp_samples": [sample(POSTGRES, 0.75), sample(ACCOUNTS, 1)]}],
    }])
