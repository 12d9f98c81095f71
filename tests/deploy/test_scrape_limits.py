"""The rendered proxy scrape jobs in a real Prometheus against hostile pods: a pod cannot report
for another namespace, and an oversized scrape is refused as a whole."""

from __future__ import annotations

import yaml

from tests.exporter import faults
from tests.support.prom import start_prometheus

LIMITED = ("sample_limit", "label_limit", "label_value_length_limit")


def _series(lines: list[str]) -> bytes:
    return ("".join(line + "\n" for line in lines)).encode()


def test_a_pod_cannot_report_for_another_namespace_nor_flood_prometheus(processes, tmp_path, deploy):
    """Scraped with the rendered istio-proxies job, a pod in `attacker` claiming `payments` is recorded as `attacker`; too many samples, labels or too long a value fail the scrape."""
    jobs = {job["job_name"]: job for job in yaml.safe_load((deploy / "prometheus/prometheus.yml").read_text())["scrape_configs"]}
    rendered = jobs["istio-proxies"]
    assert all(rendered[key] > 0 for key in LIMITED)
    settings = {"metric_relabel_configs": rendered["metric_relabel_configs"], **{key: rendered[key] for key in LIMITED},
                "metrics_path": "/stats/prometheus"}
    claims = 'destination_workload_namespace="payments",destination_service_namespace="payments",namespace="payments"'
    bodies = {
        "liar": _series([f'istio_requests_total{{reporter="destination",response_code="500",{claims}}} 5',
                         'istio_requests_total{reporter="source",source_workload_namespace="payments",'
                         'destination_workload_namespace="shop",response_code="200"} 9']),
        "flood": _series([f'envoy_x{{n="{i}"}} 1' for i in range(rendered["sample_limit"] + 1)]),
        "labels": _series(["envoy_x{" + ",".join(f'l{i}="v"' for i in range(rendered["label_limit"] + 1)) + "} 1"]),
        "long": _series([f'envoy_x{{l="{"v" * (rendered["label_value_length_limit"] + 1)}"}} 1']),
    }
    servers = faults.FaultServers()
    try:
        targets = [{"targets": [f"127.0.0.1:{servers.add(faults.good(body))}"], "labels": {"namespace": "attacker", "pod": name}}
                   for name, body in bodies.items()]
        prometheus = start_prometheus(processes, tmp_path, {"istio-proxies": targets}, job_settings={"istio-proxies": settings})
        up = prometheus.wait_for('count(up{job="istio-proxies"}) == 4 and count(scrape_samples_scraped{job="istio-proxies"}) == 4')
        assert up
        assert {s["metric"]["pod"]: s["value"][1] for s in prometheus.query('up{job="istio-proxies"}')} == {
            "liar": "1", "flood": "0", "labels": "0", "long": "0"}
        recorded = {(s["metric"]["reporter"], s["metric"].get("destination_workload_namespace"),
                     s["metric"].get("destination_service_namespace"), s["metric"].get("source_workload_namespace"),
                     s["metric"]["namespace"]) for s in prometheus.query("istio_requests_total")}
        assert recorded == {("destination", "attacker", "attacker", None, "attacker"),
                            ("source", "shop", None, "attacker", "attacker")}
    finally:
        servers.stop()
