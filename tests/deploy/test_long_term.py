"""Many clusters into one store: deploy/prometheus-agent checked by promtool and run for real —
two Prometheus agents (clusters eu-1 and us-1) scraping replayed Istio sidecars and the real
exporter, remote-writing into one VictoriaMetrics, where vmalert evaluates deploy/ruler's rules:
per-cluster recordings for both clusters and the global roll-ups across them."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from meshobs import build, cli, config, writer
from tests.deploy.discovered import istio_targets, start_istio_exporter, with_file_sd
from tests.deploy.test_configs import _without_service_discovery
from tests.support import meshdata, meshdata_more
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


def _called_from(targets: list[meshdata.Target], caller_cluster: str) -> list[meshdata.Target]:
    """The targets with every Istio request series reporting its caller in `caller_cluster`."""
    for target in targets:
        target.series = [replace(s, labels=tuple((k, caller_cluster if k == "source_cluster" and v != "unknown" else v)
                                                 for k, v in s.labels)) for s in target.series]
    return targets


def _start_cluster(name: str, vm, processes, tmp_path, request, caller_cluster: str) -> Path:
    """One cluster's replayed Istio sidecars (their callers in `caller_cluster`), exporter and
    agent remote-writing into `vm`; the rendered output's folder."""
    folder = tmp_path / name
    folder.mkdir()
    cfg = config.from_dict({"deploy": {"cluster": name, "scrape_interval": "1s",
                                       "remote_write_url": f"{vm.url}/api/v1/write"}})
    writer.write(build.render(cfg, build.select_meshes(["istio"])), folder / "out")
    # the kubelet's cAdvisor is not one of the rendered jobs (kube-prometheus scrapes it)
    targets = _called_from([t for t in meshdata_more.MESHES["istio"](time.time()) if t.workload != "kubelet"], caller_cluster)
    served = Replay.start(request, targets).addresses()
    exporter = start_istio_exporter(processes, folder, served)
    rendered = yaml.safe_load((folder / "out/deploy/prometheus-agent/prometheus.yml").read_text())
    agent = with_file_sd(rendered, folder / "agent", istio_targets(served, f"127.0.0.1:{exporter.port}"))
    run_prometheus(processes, folder / "agent", agent, agent=True)
    return folder / "out"


def test_two_agents_one_store_one_ruler(processes, tmp_path, request, capsys):
    """Two clusters' agents feed one VictoriaMetrics; vmalert on deploy/ruler records both clusters and sums them globally; every dashboard passes verify, the clusters dashboard shows both clusters and the eu-1 → us-1 calls."""
    vm = start_victoria_metrics(processes, tmp_path)
    # eu-1's services are called from within eu-1, us-1's from eu-1: traffic between clusters
    out = [_start_cluster(name, vm, processes, tmp_path, request, caller_cluster=CLUSTERS[0]) for name in CLUSTERS][0]
    rules = sorted((out / "deploy/ruler/rules").glob("istio-*.yaml"))
    vmalert = start_vmalert(processes, tmp_path, vm, rules)

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

    vmalert.wait_settled(vm)
    code = cli.main(["verify", "--prometheus", vm.url, "--dir", str(out), "--mesh", "istio", "--scrape-interval", "1s",
                     "--range", "2m"])
    printed = capsys.readouterr().out
    assert [line for line in printed.splitlines() if line.startswith("FAIL")] == [] and code == 0, printed
    board = json.loads((out / "dashboards/istio/clusters.json").read_text())
    # a collapsed row carries its panels inside it
    panels = {p["title"]: p["targets"][0]["expr"] for row in board["panels"] for p in [row] + row.get("panels", [])
              if p.get("targets")}
    requests = vm.query(panels["Requests"].replace("$cluster", ".*"))
    assert {s["metric"]["cluster"] for s in requests} == set(CLUSTERS)
    pairs = vm.query(panels["Requests by caller cluster"].replace("$cluster", ".*").replace("$__rate_interval", "1m"))
    assert {(s["metric"]["source_cluster"], s["metric"]["cluster"]) for s in pairs} >= {("eu-1", "eu-1"), ("eu-1", "us-1")}
