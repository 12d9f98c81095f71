"""The cluster label on every series: a real Prometheus running the rendered prometheus.yml (its
Kubernetes discovery swapped for file_sd targets carrying the very `__meta_*` labels that
discovery would attach) scrapes replayed Istio sidecars, istiod and the real exporter."""

from __future__ import annotations

import time

import yaml

from meshobs import build, config, writer
from tests.deploy.discovered import istio_targets, start_istio_exporter, with_file_sd
from tests.support import meshdata
from tests.support.prom import run_prometheus
from tests.verify.replay import Replay

CLUSTER = "eu-1"


def test_every_series_carries_the_configured_cluster(processes, tmp_path, request):
    """Every series in Prometheus — proxies', istiod's, the exporter's own, scrape metadata and recordings — has cluster="eu-1"."""
    cfg = config.from_dict({"deploy": {"cluster": CLUSTER, "scrape_interval": "1s"}})
    out = tmp_path / "out"
    writer.write(build.render(cfg, build.select_meshes(["istio"])), out)
    served = Replay.start(request, meshdata.MESHES["istio"](time.time())).addresses()
    exporter = start_istio_exporter(processes, tmp_path, served)

    rendered = yaml.safe_load((out / "deploy/prometheus/prometheus.yml").read_text())
    folder = tmp_path / "prometheus"
    rendered = with_file_sd(rendered, folder, istio_targets(served, f"127.0.0.1:{exporter.port}"))
    rendered.pop("alerting")  # no Alertmanager here
    rendered["rule_files"] = [str(p) for p in sorted((out / "deploy/prometheus/rules").glob("*"))]
    prometheus = run_prometheus(processes, folder, rendered)

    prometheus.wait_for('count(up{job="meshobs-exporter"} == 1) and count(up{job="istio-proxies"} == 1) >= 5')
    prometheus.wait_for("destination_service:mesh_requests:rate5m")
    prometheus.wait_for("meshobs_tls_handshakes_total")
    # Rules evaluated before the first scrapes (absent() of everything) wrote series that the next
    # evaluation marks stale: look only once every group has evaluated with the data in place.
    prometheus.wait_for_rules_after(time.time())
    without = prometheus.query(f'count by (__name__, job) ({{__name__=~".+", cluster!="{CLUSTER}"}})')
    assert without == []
    names = {s["metric"]["__name__"] for s in prometheus.query(f'count by (__name__) ({{cluster="{CLUSTER}"}})')}
    assert {"up", "meshobs_target_up", "istio_requests_total", "pilot_xds_pushes",
            "destination_service:mesh_requests:rate5m"} <= names
