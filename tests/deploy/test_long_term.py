"""Many clusters into one store: deploy/prometheus-agent checked by promtool and run for real —
two Prometheus agents (clusters eu-1 and us-1) scraping replayed Istio sidecars and the real
exporter, remote-writing into one VictoriaMetrics, where vmalert evaluates deploy/ruler's rules:
per-cluster recordings for both clusters and the global roll-ups across them."""

from __future__ import annotations

import subprocess
import time

import pytest
import yaml

from meshobs import build, config, writer
from tests.deploy.discovered import istio_targets, start_istio_exporter, with_file_sd
from tests.deploy.test_configs import _without_service_discovery
from tests.support import meshdata
from tests.support.procs import require_binary
from tests.support.prom import run_prometheus
from tests.support.victoria import start_victoria_metrics, start_vmalert
from tests.verify.replay import Replay

CLUSTERS = ("eu-1", "us-1")


def test_agent_config_is_the_scrape_side_only(deploy, tmp_path):
    """The agent config has prometheus.yml's scrape jobs, remote_write and no rules; promtool --agent accepts it."""
    agent = yaml.safe_load((deploy / "prometheus-agent/prometheus.yml").read_text())
    full = yaml.safe_load((deploy / "prometheus/prometheus.yml").read_text())
    assert agent["scrape_configs"] == full["scrape_configs"]
    assert agent["remote_write"] == [{"url": config.Config().deploy.remote_write_url}]
    assert set(agent) == {"global", "scrape_configs", "remote_write"}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(_without_service_discovery(agent)))
    result = subprocess.run([require_binary("promtool"), "check", "config", "--agent", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruler_gets_every_rule_file_with_the_global_ones(deploy):
    """deploy/ruler holds each mesh's recording, alerting and global rule files."""
    names = sorted(p.name for p in (deploy / "ruler/rules").iterdir())
    assert names == sorted(f"{mesh}-{kind}-rules.yaml" for mesh in ("consul", "istio", "linkerd")
                           for kind in ("alerting", "global", "recording"))


def _start_cluster(name: str, vm, processes, tmp_path, request) -> None:
    folder = tmp_path / name
    folder.mkdir()
    cfg = config.from_dict({"deploy": {"cluster": name, "scrape_interval": "1s",
                                       "remote_write_url": f"{vm.url}/api/v1/write"}})
    writer.write(build.render(cfg, build.select_meshes(["istio"])), folder / "out")
    served = Replay.start(request, meshdata.MESHES["istio"](time.time())).addresses()
    exporter = start_istio_exporter(processes, folder, served)
    rendered = yaml.safe_load((folder / "out/deploy/prometheus-agent/prometheus.yml").read_text())
    agent = with_file_sd(rendered, folder / "agent", istio_targets(served, f"127.0.0.1:{exporter.port}"))
    run_prometheus(processes, folder / "agent", agent, agent=True)


def test_two_agents_one_store_one_ruler(processes, tmp_path, request):
    """Two clusters' agents feed one VictoriaMetrics; vmalert on deploy/ruler records both clusters and sums them globally."""
    vm = start_victoria_metrics(processes, tmp_path)
    for name in CLUSTERS:
        _start_cluster(name, vm, processes, tmp_path, request)
    rules = sorted((tmp_path / CLUSTERS[0] / "out/deploy/ruler/rules").glob("istio-*.yaml"))
    start_vmalert(processes, tmp_path, vm, rules)

    vm.wait_for('count(count by (cluster) (up{job="meshobs-exporter"})) == 2')
    vm.wait_for("count(count by (cluster) (destination_service:mesh_requests:rate5m)) == 2")
    vm.wait_for("global_destination_service:mesh_requests:rate5m")
    at = time.time()
    vm.flush()
    per_cluster = vm.query("destination_service:mesh_requests:rate5m", at)
    rolled_up = vm.query("global_destination_service:mesh_requests:rate5m", at)
    services = {(s["metric"]["destination_namespace"], s["metric"]["destination_service"]) for s in per_cluster}
    assert {s["metric"]["cluster"] for s in per_cluster} == set(CLUSTERS)
    assert all("cluster" not in s["metric"] for s in rolled_up)
    assert {(s["metric"]["destination_namespace"], s["metric"]["destination_service"]) for s in rolled_up} == services
    for s in rolled_up:
        key = (s["metric"]["destination_namespace"], s["metric"]["destination_service"])
        clusters = [float(p["value"][1]) for p in per_cluster
                    if (p["metric"]["destination_namespace"], p["metric"]["destination_service"]) == key]
        assert len(clusters) == 2
        assert float(s["value"][1]) == pytest.approx(sum(clusters), rel=0.05)
