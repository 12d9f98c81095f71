"""The rendered proxy scrape jobs in a real Prometheus against hostile pods on loopback (their
Kubernetes discovery labels given as static labels): a pod cannot report for another namespace
or, without a controller, as another workload, and an oversized scrape is refused as a whole."""

from __future__ import annotations

import yaml

from tests.exporter import faults
from tests.support.prom import start_prometheus

LIMITED = ("sample_limit", "label_limit", "label_value_length_limit")
PROXY_PORT = {"istio-proxies": ("istio-proxy", "http-envoy-prom"), "linkerd-proxies": ("linkerd-proxy", "linkerd-admin")}


def _series(lines: list[str]) -> bytes:
    return ("".join(line + "\n" for line in lines)).encode()


def _pod(servers, job: str, name: str, body: bytes, controller: str = "", labels: dict | None = None) -> dict:
    """A static target carrying the discovery labels Prometheus would give a pod in `attacker`."""
    container, port_name = PROXY_PORT[job]
    meta = {"__meta_kubernetes_pod_container_name": container, "__meta_kubernetes_pod_container_port_name": port_name,
            "__meta_kubernetes_namespace": "attacker", "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_controller_kind": controller,
            **{f"__meta_kubernetes_pod_label_{k}": v for k, v in (labels or {}).items()}}
    return {"targets": [f"127.0.0.1:{servers.add(faults.good(body))}"], "labels": meta}


def test_a_pod_cannot_report_for_another_namespace_or_workload_nor_flood_prometheus(processes, tmp_path, deploy):
    """With the rendered jobs, a pod in `attacker` claiming `payments` is recorded as `attacker`, a bare pod claiming a Deployment is pod/<name>, and too many samples, labels or too long a value fail the scrape."""
    jobs = {job["job_name"]: job for job in yaml.safe_load((deploy / "prometheus/prometheus.yml").read_text())["scrape_configs"]}
    istio = jobs["istio-proxies"]
    assert all(istio[key] > 0 for key in LIMITED)
    claims = ('destination_workload_namespace="payments",destination_service_namespace="payments",namespace="payments",'
              'destination_workload="checkout"')
    liar = _series([f'istio_requests_total{{reporter="destination",response_code="500",{claims}}} 5',
                    'istio_requests_total{reporter="source",source_workload_namespace="payments",source_workload="checkout",'
                    'destination_workload_namespace="shop",destination_workload="db",response_code="200"} 9'])
    servers = faults.FaultServers()
    try:
        targets = {
            "istio-proxies": [
                _pod(servers, "istio-proxies", "liar", liar),
                _pod(servers, "istio-proxies", "checkout-5d8f7-abcde", liar, controller="ReplicaSet"),
                _pod(servers, "istio-proxies", "flood", _series([f'envoy_x{{n="{i}"}} 1' for i in range(istio["sample_limit"] + 1)])),
                _pod(servers, "istio-proxies", "labels",
                     _series(["envoy_x{" + ",".join(f'l{i}="v"' for i in range(istio["label_limit"] + 1)) + "} 1"])),
                _pod(servers, "istio-proxies", "long", _series([f'envoy_x{{l="{"v" * (istio["label_value_length_limit"] + 1)}"}} 1'])),
            ],
            "linkerd-proxies": [
                _pod(servers, "linkerd-proxies", "bare", _series(['response_total{direction="inbound",deployment="x"} 1']),
                     labels={"linkerd_io_proxy_deployment": "checkout"}),
                _pod(servers, "linkerd-proxies", "web-5d8f7-abcde", _series(['response_total{direction="inbound"} 1']),
                     controller="ReplicaSet", labels={"linkerd_io_proxy_deployment": "web"}),
            ],
        }
        settings = {name: {k: v for k, v in jobs[name].items() if k not in ("job_name", "kubernetes_sd_configs")}
                    for name in targets}
        prometheus = start_prometheus(processes, tmp_path, targets, job_settings=settings)
        prometheus.wait_for("count(scrape_samples_scraped) == 7")
        assert {s["metric"]["pod"]: s["value"][1] for s in prometheus.query('up{job="istio-proxies"}')} == {
            "liar": "1", "checkout-5d8f7-abcde": "1", "flood": "0", "labels": "0", "long": "0"}
        recorded = {(s["metric"]["pod"], s["metric"]["reporter"], s["metric"].get("destination_workload_namespace"),
                     s["metric"].get("destination_service_namespace"), s["metric"].get("destination_workload"),
                     s["metric"].get("source_workload_namespace"), s["metric"].get("source_workload"), s["metric"]["namespace"])
                    for s in prometheus.query("istio_requests_total")}
        assert recorded == {
            ("liar", "destination", "attacker", "attacker", "pod/liar", None, None, "attacker"),
            ("liar", "source", "shop", None, "db", "attacker", "pod/liar", "attacker"),
            ("checkout-5d8f7-abcde", "destination", "attacker", "attacker", "checkout", None, None, "attacker"),
            ("checkout-5d8f7-abcde", "source", "shop", None, "db", "attacker", "checkout", "attacker"),
        }
        # the helper label is dropped from what the proxy exposes (it stays on the synthetic `up` series only)
        assert not any("meshobs_bare_pod" in s["metric"] for s in prometheus.query("istio_requests_total or response_total"))
        linkerd = {s["metric"]["pod"]: (s["metric"]["deployment"], s["metric"].get("exported_deployment"))
                   for s in prometheus.query("response_total")}
        assert linkerd == {"bare": ("pod/bare", "x"), "web-5d8f7-abcde": ("web", None)}
    finally:
        servers.stop()
