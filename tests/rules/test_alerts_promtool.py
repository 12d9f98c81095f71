"""Every alert of every mesh, run by the real `promtool test rules` on series written in that
mesh's own metric names: it fires on the bad case with the documented labels and annotations,
and stays silent on the healthy and on the low-traffic case."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from meshobs import build, config, signals, yamlfmt
from meshobs.meshes import DIALECTS
from meshobs.render.rules import ALERT_NAMES
from tests.rules.traffic import CLUSTER, MeshTraffic, constant, counter, native_denials, series
from tests.support.procs import require_binary

CFG = config.Config()
RUNBOOK = CFG.runbook_url_base
NS, SVC = "shop", "checkout"


@pytest.fixture(scope="module")
def rule_files(tmp_path_factory) -> dict[str, list[Path]]:
    out = tmp_path_factory.mktemp("rules")
    artefacts = build.render(CFG, DIALECTS.values())
    files: dict[str, list[Path]] = {}
    for path, content in artefacts.items():
        if path.startswith("alerts/"):
            target = out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            files.setdefault(path.split("/")[1], []).append(target)
    return files


def _alert(mesh: str, name: str, severity: str, labels: dict, summary: str, description: str) -> dict:
    return {
        "exp_labels": dict({"severity": severity, "mesh": mesh, "cluster": CLUSTER}, **labels),
        "exp_annotations": {"summary": summary, "description": description, "runbook_url": f"{RUNBOOK}{name.lower()}"},
    }


def _case(name: str, input_series: list[dict], eval_time: str, alertname: str, expected: list[dict]) -> dict:
    return {
        "name": name,
        "interval": "1m",
        "input_series": input_series,
        "alert_rule_test": [{"eval_time": eval_time, "alertname": alertname, "exp_alerts": expected}],
    }


SERVICE = {"destination_namespace": NS, "destination_service": SVC}
WORKLOAD = {"destination_namespace": NS, "destination_workload": SVC}


def high_error_rate(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshHighErrorRate"
    fires = _alert(mesh, name, "critical", SERVICE, f"{title}: {SVC} answers more than 10% of requests with 5xx",
                   f"50% of requests to {SVC} in {NS} failed with 5xx over the last 5m (threshold 10%, at least 0.5 req/s).")
    return [
        _case("bad", t.requests(NS, SVC, "200", (5, 20)) + t.requests(NS, SVC, "503", (5, 20)), "15m", name, [fires]),
        _case("healthy", t.requests(NS, SVC, "200", (10, 20)) + t.requests(NS, SVC, "503", (0.1, 20)), "15m", name, []),
        _case("low traffic", t.requests(NS, SVC, "200", (0.1, 20)) + t.requests(NS, SVC, "503", (0.1, 20)), "15m", name, []),
    ]


def high_latency(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshHighLatencyP99"
    fires = _alert(mesh, name, "warning", dict(SERVICE, quantile="0.99"), f"{title}: {SVC} p99 latency above 1s",
                   f"p99 latency of {SVC} in {NS} is 4.96s over the last 5m (threshold 1s).")
    return [
        _case("bad", t.requests(NS, SVC, "200", (2, 30)) + t.latency(NS, SVC, 2, 30, slow=True), "25m", name, [fires]),
        _case("healthy", t.requests(NS, SVC, "200", (2, 30)) + t.latency(NS, SVC, 2, 30, slow=False), "25m", name, []),
        _case("low traffic", t.requests(NS, SVC, "200", (0.1, 30)) + t.latency(NS, SVC, 0.1, 30, slow=True), "25m", name, []),
    ]


def unauthorized_burst(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshUnauthorizedAccessBurst"
    denied = lambda *phases: [t.exporter("meshobs_authz_denied_total", NS, SVC, counter(*phases))]
    description = (f"{SVC} in {NS} denies 2 requests/s by authorization policy over the last 5m, "
                   "more than 5x its 1h baseline or above 1/s.")
    fires = _alert(mesh, name, "critical", WORKLOAD, f"{title}: burst of authorization denials at {SVC}", description)
    relative = _alert(mesh, name, "critical", WORKLOAD, f"{title}: burst of authorization denials at {SVC}",
                      description.replace("denies 2 ", "denies 0.8 "))
    return [
        _case("bad: burst over a baseline", denied((0.02, 120), (2, 10)), "130m", name, [fires]),
        _case("bad: relative burst below the absolute rate", denied((0.02, 120), (0.8, 10)), "126m", name, [relative]),
        _case("bad: native proxy metrics only", native_denials(mesh, NS, SVC, (0, 120), (2, 10)), "130m", name, [fires]),
        _case("healthy: steady trickle of denials", denied((0.02, 130)), "130m", name, []),
        _case("low traffic: from zero to a trickle", denied((0, 120), (0.02, 10)), "130m", name, []),
    ]


def mtls_failure(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshMTLSFailure"
    failures = lambda values: [t.exporter("meshobs_tls_handshake_failures_total", NS, SVC, values, reason="untrusted_cert")]
    fires = _alert(mesh, name, "critical", dict(WORKLOAD, reason="untrusted_cert"),
                   f"{title}: mTLS handshakes fail at {SVC} (untrusted_cert)",
                   f"{SVC} in {NS} rejects 0.5 TLS handshakes/s with reason untrusted_cert over the last 5m.")
    cases = [
        _case("bad", failures(counter((0.5, 10))), "10m", name, [fires]),
        _case("healthy", failures(constant(0, 10)), "10m", name, []),
        _case("low traffic: one stray failure", failures("0x5 1x5"), "10m", name, []),
    ]
    if mesh == "consul":
        native = [series("envoy_listener_ssl_fail_verify_no_cert", {"namespace": NS, "local_cluster": SVC}, counter((0.5, 10)))]
        expected = _alert(mesh, name, "critical", dict(WORKLOAD, reason="no_client_cert"),
                          f"{title}: mTLS handshakes fail at {SVC} (no_client_cert)",
                          f"{SVC} in {NS} rejects 0.5 TLS handshakes/s with reason no_client_cert over the last 5m.")
        cases.append(_case("bad: native Envoy counters only", native, "10m", name, [expected]))
    return cases


def plaintext(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshPlaintextTraffic"
    fires = _alert(mesh, name, "warning", WORKLOAD, f"{title}: plaintext traffic reaches {SVC}",
                   f"{SVC} in {NS} receives 1 requests/s without mutual TLS over the last 5m.")
    if mesh == "consul":  # Consul labels no request as plaintext: only the exporter sees it
        bad = t.requests(NS, SVC, "200", (1, 15)) + [t.exporter("meshobs_plaintext_requests_total", NS, SVC, counter((1, 15)))]
        healthy = t.requests(NS, SVC, "200", (1, 15)) + [t.exporter("meshobs_plaintext_requests_total", NS, SVC, constant(0, 15))]
        low = t.requests(NS, SVC, "200", (1, 15)) + [t.exporter("meshobs_plaintext_requests_total", NS, SVC, "0x10 1x5")]
    else:
        bad = t.requests(NS, SVC, "200", (1, 15), mtls=False)
        healthy = t.requests(NS, SVC, "200", (1, 15), mtls=True)
        low = t.requests(NS, SVC, "200", (1, 15)) + [
            {**s, "values": "0x10 1x5"} for s in t.requests(NS, SVC, "200", (0, 1), mtls=False)]
    return [
        _case("bad", bad, "15m", name, [fires]),
        _case("healthy", healthy, "15m", name, []),
        _case("low traffic: one plaintext request", low, "15m", name, []),
    ]


def cert_expiry(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshCertificateExpiringSoon"
    cert = lambda seconds: [t.exporter("meshobs_cert_expiry_timestamp_seconds", NS, SVC, constant(seconds, 10), cert="leaf")]

    def expected(severity: str, within: str, left: str) -> dict:
        return _alert(mesh, name, severity, dict(WORKLOAD, cert="leaf"),
                      f"{title}: leaf certificate of {SVC} expires within {within}",
                      f"The leaf certificate of {SVC} in {NS} expires in {left}.")

    cases = [
        _case("bad: 3 days left", cert(3 * 86400), "10m", name, [expected("warning", "7d", "2d 23h 50m 0s")]),
        _case("bad: 12 hours left", cert(12 * 3600), "10m", name,
              [expected("critical", "1d", "11h 50m 0s"), expected("warning", "7d", "11h 50m 0s")]),
        _case("healthy: 30 days left", cert(30 * 86400), "10m", name, []),
    ]
    if mesh == "linkerd":
        native = [series("identity_cert_expiration_timestamp_seconds", {"namespace": NS, "deployment": SVC}, constant(3 * 86400, 10))]
        cases.append(_case("bad: native proxy metric only", native, "10m", name, [expected("warning", "7d", "2d 23h 50m 0s")]))
    return cases


def error_budget(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshErrorBudgetBurn"
    bad = []
    for long, short, factor, severity in (("1h", "5m", 14.4, "page"), ("6h", "30m", 6, "page"),
                                          ("1d", "2h", 3, "ticket"), ("3d", "6h", 1, "ticket")):
        bad.append(_alert(mesh, name, severity, dict(SERVICE, long_window=long, short_window=short),
                          f"{title}: {SVC} burns its error budget {factor:g}x too fast",
                          f"{SVC} in {NS} has an error ratio of 10% over {long} and {short}: "
                          f"{factor:g}x the rate that spends the 99.9% SLO's budget in 30d."))
    return [
        _case("bad: 10% errors for 70 minutes", t.requests(NS, SVC, "200", (9, 80)) + t.requests(NS, SVC, "503", (1, 80)),
              "70m", name, sorted(bad, key=lambda a: a["exp_labels"]["severity"])),
        _case("healthy: 0.01% errors", t.requests(NS, SVC, "200", (10, 80)) + t.requests(NS, SVC, "503", (0.001, 80)), "70m", name, []),
        _case("low traffic", t.requests(NS, SVC, "200", (0.1, 80)) + t.requests(NS, SVC, "503", (0.1, 80)), "70m", name, []),
    ]


def config_rejected(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshProxyConfigRejected"
    where = {"consul": " by checkout in shop"}.get(mesh, "")
    labels = WORKLOAD if mesh == "consul" else {}
    fires = _alert(mesh, name, "warning", labels, f"{title}: configuration rejected",
                   f"60 configuration updates were rejected in the last 10m{where}.")
    return [
        _case("bad", t.config_rejections((0.1, 15)), "15m", name, [fires]),
        _case("healthy", t.config_rejections((0, 15)), "15m", name, []),
    ]


def exporter_target_down(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshExporterTargetDown"
    up = lambda values: [t.exporter("meshobs_target_up", NS, SVC, values)]
    fires = _alert(mesh, name, "warning", {"namespace": NS, "workload": SVC},
                   f"{title}: the meshobs exporter cannot read proxy {SVC}",
                   f"The meshobs exporter has failed to scrape the proxy of {SVC} in {NS} for 5 minutes; its security signals are missing.")
    return [
        _case("bad", up(constant(0, 10)), "10m", name, [fires]),
        _case("healthy", up(constant(1, 10)), "10m", name, []),
        _case("blip: down for two minutes", up("1x5 0x2 1x3"), "10m", name, []),
    ]


def dry_run_denials(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshPolicyDryRunDenials"
    healthy = [t.exporter("meshobs_authz_dry_run_denied_total", NS, SVC, constant(0, 15))]
    if not signals.DRY_RUN_DENIED.available(DIALECTS[mesh]):  # a proxy that reports no dry-run decision
        return [_case("never rendered", healthy, "15m", name, [])]
    fires = _alert(mesh, name, "info", WORKLOAD,
                   f"{title}: a dry-run authorization policy would deny requests to {SVC}",
                   f"A dry-run (shadow) policy at {SVC} in {NS} would deny 1 requests/s (last 5m): "
                   "enforcing it now would break these callers (`meshobs authz` lists them).")
    return [
        _case("bad", [t.exporter("meshobs_authz_dry_run_denied_total", NS, SVC, counter((1, 15)))], "15m", name, [fires]),
        _case("healthy", healthy, "15m", name, []),
    ]


SCENARIOS = {
    "MeshHighErrorRate": high_error_rate,
    "MeshHighLatencyP99": high_latency,
    "MeshUnauthorizedAccessBurst": unauthorized_burst,
    "MeshMTLSFailure": mtls_failure,
    "MeshPlaintextTraffic": plaintext,
    "MeshCertificateExpiringSoon": cert_expiry,
    "MeshErrorBudgetBurn": error_budget,
    "MeshProxyConfigRejected": config_rejected,
    "MeshExporterTargetDown": exporter_target_down,
    "MeshPolicyDryRunDenials": dry_run_denials,
}


def test_every_alert_has_scenarios():
    """Every alert meshobs renders is covered by a promtool scenario."""
    assert set(SCENARIOS) == set(ALERT_NAMES)


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
@pytest.mark.parametrize("alertname", ALERT_NAMES)
def test_alert_fires_on_bad_and_stays_silent_otherwise(alertname, mesh, rule_files, tmp_path):
    """promtool agrees with each scenario: bad fires with exact labels and annotations, the rest stay silent."""
    promtool = require_binary("promtool")
    tests = SCENARIOS[alertname](mesh, DIALECTS[mesh].title)
    test_file = tmp_path / f"{mesh}-{alertname}.yaml"
    test_file.write_text(yamlfmt.dump({
        "rule_files": [str(p) for p in sorted(rule_files[mesh])],
        "evaluation_interval": "1m",
        "tests": tests,
    }))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
