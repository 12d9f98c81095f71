"""The cluster label on every series: a real Prometheus running the rendered prometheus.yml (its
Kubernetes discovery swapped for file_sd targets carrying the very `__meta_*` labels that
discovery would attach) scrapes replayed Istio sidecars, istiod and the real exporter."""

from __future__ import annotations

import json
import time

import yaml

from meshobs import build, config, writer
from tests.exporter.running import start_exporter
from tests.support import meshdata
from tests.support.prom import run_prometheus
from tests.verify import stack
from tests.verify.replay import Replay

CLUSTER = "eu-1"


def _discovered(address: str, **meta: str) -> dict:
    return {"targets": [address], "labels": {f"__meta_kubernetes_{k}": v for k, v in meta.items()}}


def _targets(served, exporter_address: str) -> dict[str, list[dict]]:
    """Per rendered job, what its discovery would find, with the labels its relabelling keeps."""
    proxies = [_discovered(address, namespace=t.labels["namespace"], pod_name=t.labels["pod"],
                           pod_container_name="istio-proxy", pod_container_port_name="http-envoy-prom")
               for t, address in served if t.proxy]
    istiod = [_discovered(address, namespace=t.labels["namespace"], pod_name=t.labels["pod"],
                          service_name="istiod", endpoint_port_name="http-monitoring")
              for t, address in served if not t.proxy]
    exporter = [_discovered(exporter_address, namespace="meshobs", pod_name="meshobs-exporter-0",
                            pod_label_app_kubernetes_io_name="meshobs-exporter", pod_container_port_name="metrics")]
    return {"istio-proxies": proxies, "istiod": istiod, "meshobs-exporter": exporter}


def test_every_series_carries_the_configured_cluster(processes, tmp_path, request):
    """Every series in Prometheus — proxies', istiod's, the exporter's own, scrape metadata and recordings — has cluster="eu-1"."""
    cfg = config.from_dict({"deploy": {"cluster": CLUSTER, "scrape_interval": "1s"}})
    out = tmp_path / "out"
    writer.write(build.render(cfg, build.select_meshes(["istio"])), out)
    served = Replay.start(request, meshdata.MESHES["istio"](time.time())).addresses()
    entries = [{"address": address, "mesh": "istio", "namespace": t.labels["namespace"], "workload": t.workload,
                "path": t.path} for t, address in served if t.proxy]
    exporter = start_exporter(processes, tmp_path, "--targets-file",
                              str(stack.exporter_targets(tmp_path / "exporter-targets.json", entries)),
                              "--scrape-interval", "500ms")

    rendered = yaml.safe_load((out / "deploy/prometheus/prometheus.yml").read_text())
    folder = tmp_path / "prometheus"
    (folder / "targets").mkdir(parents=True)
    jobs = []
    for job_name, targets in _targets(served, f"127.0.0.1:{exporter.port}").items():
        (folder / "targets" / f"{job_name}.json").write_text(json.dumps(targets))
        job = next(j for j in rendered["scrape_configs"] if j["job_name"] == job_name)
        jobs.append({k: v for k, v in job.items() if not k.endswith("_sd_configs")}
                    | {"file_sd_configs": [{"files": [str(folder / "targets" / f"{job_name}.json")]}]})
    rendered.pop("alerting")  # no Alertmanager here
    rendered.update(scrape_configs=jobs, rule_files=[str(p) for p in sorted((out / "deploy/prometheus/rules").glob("*"))])
    prometheus = run_prometheus(processes, folder, rendered)

    prometheus.wait_for('count(up{job="meshobs-exporter"} == 1) and count(up{job="istio-proxies"} == 1) >= 5')
    prometheus.wait_for("destination_service:mesh_requests:rate5m")
    prometheus.wait_for("meshobs_tls_handshakes_total")
    without = prometheus.query(f'count by (__name__, job) ({{__name__=~".+", cluster!="{CLUSTER}"}})')
    assert without == []
    names = {s["metric"]["__name__"] for s in prometheus.query(f'count by (__name__) ({{cluster="{CLUSTER}"}})')}
    assert {"up", "meshobs_target_up", "istio_requests_total", "pilot_xds_pushes",
            "destination_service:mesh_requests:rate5m"} <= names
