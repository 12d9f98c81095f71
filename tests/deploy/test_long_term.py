"""Many clusters into one store: deploy/prometheus-agent checked by promtool and run for real —
two Prometheus agents (clusters eu-1 and us-1) scraping replayed Istio sidecars and the real
exporter, remote-writing into one VictoriaMetrics, where vmalert evaluates deploy/ruler's rules:
per-cluster recordings for both clusters and the global roll-ups across them; the same with two
Linkerd clusters calling each other through multicluster gateways. The dashboards' traffic between
clusters shows the cross-cluster pairs."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from meshobs import build, cli, config, writer
from tests.deploy.discovered import _discovered, istio_targets, start_istio_exporter, with_file_sd
from tests.deploy.test_configs import _without_service_discovery
from tests.exporter.running import start_exporter
from tests.support import meshdata, meshdata_more
from tests.support.procs import require_binary
from tests.support.prom import run_prometheus
from tests.support.victoria import start_victoria_metrics, start_vmalert
from tests.verify import stack
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


def _between(targets: list[meshdata.Target], caller_cluster: str, own_cluster: str) -> list[meshdata.Target]:
    """The targets with every Istio request series naming its caller in `caller_cluster` and its
    destination in `own_cluster` (Istio's clusterName set like the cluster label)."""
    ends = {"source_cluster": caller_cluster, "destination_cluster": own_cluster}
    for target in targets:
        target.series = [replace(s, labels=tuple((k, ends[k] if k in ends and v != "unknown" else v) for k, v in s.labels))
                         for s in target.series]
    return targets


def _linkerd_targets(served, exporter_address: str) -> dict[str, list[dict]]:
    """Per rendered Linkerd job, what its discovery would find, with the labels its relabelling keeps."""
    proxies = [_discovered(address, namespace=t.labels["namespace"], pod_name=t.labels["pod"],
                           pod_container_name="linkerd-proxy", pod_container_port_name="linkerd-admin",
                           pod_controller_kind="ReplicaSet", pod_label_linkerd_io_proxy_deployment=t.labels["deployment"])
               for t, address in served if t.proxy]
    controllers = [_discovered(address, namespace=t.labels["namespace"], pod_name=t.labels["pod"],
                               pod_container_name=t.labels["component"], pod_container_port_name="admin-http")
                   for t, address in served if not t.proxy]
    exporter = [_discovered(exporter_address, namespace="meshobs", pod_name="meshobs-exporter-0",
                            pod_label_app_kubernetes_io_name="meshobs-exporter", pod_container_port_name="metrics")]
    return {"linkerd-proxies": proxies, "linkerd-control-plane": controllers, "meshobs-exporter": exporter}


def _start_exporter(processes, folder: Path, mesh: str, served):
    """The real exporter reading the replayed sidecars of `mesh`."""
    entries = [{"address": address, "mesh": mesh, "namespace": t.labels["namespace"], "workload": t.workload,
                "path": t.path} for t, address in served if t.proxy]
    targets = stack.exporter_targets(folder / "exporter-targets.json", entries)
    return start_exporter(processes, folder, "--targets-file", str(targets), "--scrape-interval", "500ms")


def _start_cluster(name: str, vm, processes, tmp_path, request, mesh: str, targets: list[meshdata.Target]) -> Path:
    """One cluster's replayed `targets` of `mesh`, the exporter and an agent remote-writing into
    `vm`; the rendered output's folder."""
    folder = tmp_path / name
    folder.mkdir()
    cfg = config.from_dict({"deploy": {"cluster": name, "scrape_interval": "1s",
                                       "remote_write_url": f"{vm.url}/api/v1/write"}})
    writer.write(build.render(cfg, build.select_meshes([mesh])), folder / "out")
    served = Replay.start(request, targets).addresses()
    if mesh == "istio":
        exporter = start_istio_exporter(processes, folder, served)
        discovered = istio_targets(served, f"127.0.0.1:{exporter.port}")
    else:
        exporter = _start_exporter(processes, folder, mesh, served)
        discovered = _linkerd_targets(served, f"127.0.0.1:{exporter.port}")
    rendered = yaml.safe_load((folder / "out/deploy/prometheus-agent/prometheus.yml").read_text())
    run_prometheus(processes, folder / "agent", with_file_sd(rendered, folder / "agent", discovered), agent=True)
    return folder / "out"


def _istio(caller_cluster: str, own_cluster: str) -> list[meshdata.Target]:
    # the kubelet's cAdvisor is not one of the rendered jobs (kube-prometheus scrapes it)
    targets = [t for t in meshdata_more.MESHES["istio"](time.time()) if t.workload != "kubelet"]
    return _between(targets, caller_cluster, own_cluster)


def _verified(vm, out: Path, mesh: str, capsys) -> None:
    """`meshobs verify` passes every dashboard and rule query of `mesh` on the store."""
    code = cli.main(["verify", "--prometheus", vm.url, "--dir", str(out), "--mesh", mesh, "--scrape-interval", "1s",
                     "--range", "2m"])
    printed = capsys.readouterr().out
    assert [line for line in printed.splitlines() if line.startswith("FAIL")] == [] and code == 0, printed


def _panel_exprs(out: Path, mesh: str, dashboard: str) -> dict[str, str]:
    """Panel title -> its first query, with every variable set to all values (1m rate windows)."""
    board = json.loads((out / f"dashboards/{mesh}/{dashboard}.json").read_text())
    # a collapsed row carries its panels inside it
    return {p["title"]: p["targets"][0]["expr"].replace("$__rate_interval", "1m").replace("$cluster", ".*")
            .replace("$namespace", ".*").replace("$service", ".*")
            for row in board["panels"] for p in [row] + row.get("panels", []) if p.get("targets")}


def test_two_agents_one_store_one_ruler(processes, tmp_path, request, capsys):
    """Two clusters' agents feed one VictoriaMetrics; vmalert on deploy/ruler records both clusters and sums them globally; every dashboard passes verify, the clusters dashboard shows both clusters and the eu-1 → us-1 calls."""
    vm = start_victoria_metrics(processes, tmp_path)
    # eu-1's services are called from within eu-1, us-1's from eu-1: traffic between clusters
    out = [_start_cluster(name, vm, processes, tmp_path, request, "istio", _istio(CLUSTERS[0], name))
           for name in CLUSTERS][0]
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
    _verified(vm, out, "istio", capsys)
    panels = _panel_exprs(out, "istio", "clusters")
    assert {s["metric"]["cluster"] for s in vm.query(panels["Requests"])} == set(CLUSTERS)
    pairs = vm.query(panels["Requests by cluster pair"])
    assert {(s["metric"]["source_cluster"], s["metric"]["destination_cluster"]) for s in pairs} >= {
        ("eu-1", "eu-1"), ("eu-1", "us-1")}
    callers = vm.query(_panel_exprs(out, "istio", "service")["Requests by caller and cluster"])
    assert ("eu-1", "us-1") in {(s["metric"]["source_cluster"], s["metric"]["destination_cluster"]) for s in callers}


def test_linkerd_gateway_calls_between_two_clusters(processes, tmp_path, request, capsys):
    """Two Linkerd clusters whose `web` calls the other's `emoji` through a multicluster gateway: verify passes on the store; the clusters, overview and service dashboards show both pairs, and each gateway answering the other's probes."""
    vm = start_victoria_metrics(processes, tmp_path)
    out = [_start_cluster(name, vm, processes, tmp_path, request, "linkerd",
                          meshdata_more.linkerd(time.time(), remote_cluster=other))
           for name, other in zip(CLUSTERS, reversed(CLUSTERS))][0]
    vmalert = start_vmalert(processes, tmp_path, vm, sorted((out / "alerts/linkerd").glob("*.yaml")))
    vm.wait_for('count(count by (cluster) (up{job="meshobs-exporter"})) == 2')
    vm.wait_for("count(count by (cluster) (destination_service:mesh_requests:rate5m)) == 2")
    vmalert.wait_settled(vm)
    _verified(vm, out, "linkerd", capsys)
    for dashboard in ("clusters", "overview"):
        pairs = vm.query(_panel_exprs(out, "linkerd", dashboard)["Requests by cluster pair"])
        # the caller's cluster is the store's label; the callee's is the Link's target cluster
        assert {(s["metric"]["cluster"], s["metric"]["destination_cluster"]) for s in pairs} == {
            ("eu-1", "us-1"), ("us-1", "eu-1")}
    clusters = _panel_exprs(out, "linkerd", "clusters")
    assert {float(s["value"][1]) for s in vm.query(clusters["mTLS share by cluster pair"])} == {1.0}
    gateways = vm.query(clusters["Remote clusters reachable"])
    assert {(s["metric"]["cluster"], s["metric"]["destination_cluster"], s["value"][1]) for s in gateways} == {
        ("eu-1", "us-1", "1"), ("us-1", "eu-1", "1")}
    callers = vm.query(_panel_exprs(out, "linkerd", "service")["Requests by caller and cluster"])
    assert {(s["metric"]["source_workload"], s["metric"]["cluster"], s["metric"]["destination_cluster"]) for s in callers} == {
        ("web", "eu-1", "us-1"), ("web", "us-1", "eu-1")}
