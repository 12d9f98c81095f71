"""Run the rendered prometheus.yml for real on replayed targets: Debian's Prometheus is built
without Kubernetes discovery, so each job's discovery is swapped for file_sd targets carrying
the very `__meta_*` labels that discovery would attach, and every relabel rule runs as rendered."""

from __future__ import annotations

import json
from pathlib import Path

from tests.exporter.running import start_exporter
from tests.verify import stack


def _discovered(address: str, **meta: str) -> dict:
    return {"targets": [address], "labels": {f"__meta_kubernetes_{k}": v for k, v in meta.items()}}


def istio_targets(served, exporter_address: str) -> dict[str, list[dict]]:
    """Per rendered Istio job, what its discovery would find, with the labels its relabelling keeps."""
    proxies = [_discovered(address, namespace=t.labels["namespace"], pod_name=t.labels["pod"],
                           pod_container_name="istio-proxy", pod_container_port_name="http-envoy-prom")
               for t, address in served if t.proxy]
    istiod = [_discovered(address, namespace=t.labels["namespace"], pod_name=t.labels["pod"],
                          service_name="istiod", endpoint_port_name="http-monitoring")
              for t, address in served if not t.proxy]
    exporter = [_discovered(exporter_address, namespace="meshobs", pod_name="meshobs-exporter-0",
                            pod_label_app_kubernetes_io_name="meshobs-exporter", pod_container_port_name="metrics")]
    return {"istio-proxies": proxies, "istiod": istiod, "meshobs-exporter": exporter}


def start_istio_exporter(processes, tmp_path: Path, served):
    """The real exporter reading the replayed Istio sidecars."""
    entries = [{"address": address, "mesh": "istio", "namespace": t.labels["namespace"], "workload": t.workload,
                "path": t.path} for t, address in served if t.proxy]
    targets = stack.exporter_targets(tmp_path / "exporter-targets.json", entries)
    return start_exporter(processes, tmp_path, "--targets-file", str(targets), "--scrape-interval", "500ms")


def with_file_sd(rendered: dict, folder: Path, targets: dict[str, list[dict]]) -> dict:
    """`rendered` (a prometheus.yml) keeping only the jobs in `targets`, each discovering them from a file."""
    (folder / "targets").mkdir(parents=True, exist_ok=True)
    jobs = []
    for job_name, found in targets.items():
        (folder / "targets" / f"{job_name}.json").write_text(json.dumps(found))
        job = next(j for j in rendered["scrape_configs"] if j["job_name"] == job_name)
        jobs.append({k: v for k, v in job.items() if not k.endswith("_sd_configs")}
                    | {"file_sd_configs": [{"files": [str(folder / "targets" / f"{job_name}.json")]}]})
    return {**rendered, "scrape_configs": jobs}
