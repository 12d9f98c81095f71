"""Envoy → exporter → Prometheus with the rendered rules → Alertmanager → webhook, all real."""

from __future__ import annotations

import time

from meshobs import build, config
from tests.e2e.test_exporter_envoy import LABELS, envoy_and_exporter
from tests.support.prom import Webhook, start_alertmanager, start_prometheus

# Windows and `for` durations in seconds so that the alerts fire within a test.
FAST_ALERTS = {
    "alerts": {
        "unauthorized_burst": {"window": "10s", "baseline_window": "1m", "for": "1s", "absolute_denials_per_second": 0.5},
        "mtls_failure": {"window": "10s", "for": "1s"},
    }
}


def rendered_rules(folder) -> list:
    artefacts = build.render(config.from_dict(FAST_ALERTS), build.select_meshes(["consul"]))
    paths = []
    for name, content in sorted(artefacts.items()):
        if name.startswith("alerts/consul/"):
            path = folder / name.rsplit("/", 1)[1]
            path.write_bytes(content)
            paths.append(path)
    return paths


def test_denials_and_tls_failures_reach_the_webhook_as_alerts(processes, tmp_path, request):
    """403s fire MeshUnauthorizedAccessBurst and foreign-CA handshakes fire MeshMTLSFailure through Alertmanager."""
    envoy, exporter = envoy_and_exporter(processes, tmp_path, interval="500ms")
    webhook = Webhook.start(request)
    alertmanager = start_alertmanager(processes, tmp_path, webhook.url)
    prometheus = start_prometheus(processes, tmp_path, {"meshobs-exporter": [f"127.0.0.1:{exporter.port}"]},
                                  rule_files=rendered_rules(tmp_path), alertmanager=alertmanager.address)
    # rate() needs two samples before the traffic starts
    prometheus.wait_for('count_over_time(meshobs_authz_denied_total{workload="backend"}[1m]) >= 2')
    assert [r for r in prometheus.rule_health() if r[1] != "ok"] == []

    first_denial = time.monotonic()
    for _ in range(15):
        assert envoy.request(envoy.pki.denied) == 403
        assert envoy.request(envoy.pki.foreign) is None
    burst = webhook.wait_for_alert("MeshUnauthorizedAccessBurst", mesh="consul", destination_workload="backend")
    burst_seconds = time.monotonic() - first_denial
    mtls = webhook.wait_for_alert("MeshMTLSFailure", mesh="consul", destination_workload="backend", reason="untrusted_cert")
    print(f"first denial to webhook: {burst_seconds:.1f}s")
    assert burst["labels"]["destination_namespace"] == LABELS["namespace"]
    assert burst["labels"]["severity"] == "critical"
    assert mtls["labels"]["destination_namespace"] == LABELS["namespace"]
    # the exporter saw the same burst (its gauge is back to 0 once the traffic stopped)
    assert exporter.value("meshobs_authz_denied_bursts_total", **LABELS) == 1
