"""prometheus.yml with its rule files through promtool; alertmanager.yml through amtool and a real
Alertmanager (routes and inhibitions as it evaluates them)."""

from __future__ import annotations

import json
import shutil
import subprocess

import yaml

from meshobs import config
from meshobs.render.deploy import prometheus
from tests.deploy.conftest import render
from tests.support.procs import http_get, require_binary, wait_until
from tests.support.prom import amtool_routes, run_alertmanager

# Debian's Prometheus 2.42 (the one installed here) is built without these discoveries.
MISSING_IN_DEBIAN_BUILD = ("kubernetes_sd_configs", "consul_sd_configs")


def _without_service_discovery(config: dict) -> dict:
    """The same config with each discovery block swapped for file_sd, keeping every relabel rule."""
    jobs = []
    for job in config["scrape_configs"]:
        job = {k: v for k, v in job.items() if k not in MISSING_IN_DEBIAN_BUILD}
        jobs.append({**job, "file_sd_configs": [{"files": ["targets/*.json"]}]})
    return {**config, "scrape_configs": jobs}


def test_promtool_accepts_the_prometheus_config_with_its_rule_files(deploy, tmp_path):
    """promtool check config accepts prometheus.yml and all six rule files beside it; with Debian's build only the missing discoveries are reported."""
    promtool = require_binary("promtool")
    folder = tmp_path / "prometheus"
    shutil.copytree(deploy / "prometheus", folder)
    raw = subprocess.run([promtool, "check", "config", str(folder / "prometheus.yml")], capture_output=True, text=True)
    if raw.returncode != 0:
        errors = [line.strip() for line in raw.stderr.splitlines() if "not found in type" in line]
        assert errors and all(
            any(f"field {name} not found in type config.ScrapeConfig" in line for name in MISSING_IN_DEBIAN_BUILD) for line in errors
        ), raw.stderr
        config = yaml.safe_load((folder / "prometheus.yml").read_text())
        (folder / "prometheus.yml").write_text(yaml.safe_dump(_without_service_discovery(config)))
        (folder / "targets").mkdir()
        (folder / "targets/none.json").write_text("[]")
    result = subprocess.run([promtool, "check", "config", str(folder / "prometheus.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rule files found" in result.stdout and "WARNING" not in result.stdout
    assert result.stdout.count(" rules found\n") == 6  # each rule file checked


def test_prometheus_config_scrapes_each_mesh_once_and_the_exporter(deploy):
    """Jobs: the exporter (honouring its labels), Istio sidecars and waypoints on 15090, ztunnels, istiod, Linkerd proxies and control plane, Consul sidecars and servers via consul_sd_configs."""
    config = yaml.safe_load((deploy / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == ["meshobs-exporter", "istio-proxies", "istio-waypoints", "istio-ztunnels", "istiod",
                          "linkerd-proxies", "linkerd-control-plane", "consul-proxies", "consul-servers"]
    servers = jobs["consul-servers"]
    assert (servers["metrics_path"], servers["params"]) == ("/v1/agent/metrics", {"format": ["prometheus"]})
    assert servers["consul_sd_configs"] == [{"server": "consul-server.consul.svc:8500", "services": ["consul"]}]
    assert jobs["meshobs-exporter"]["honor_labels"] is True
    assert jobs["istio-proxies"]["metrics_path"] == "/stats/prometheus"
    assert jobs["consul-proxies"]["consul_sd_configs"] == [{"server": "consul-server.consul.svc:8500"}]
    assert {"source_labels": ["__meta_consul_service_address"], "regex": "(.+)", "target_label": "__address__",
            "replacement": "$1:20200"} in jobs["consul-proxies"]["relabel_configs"]
    assert config["rule_files"] == [f"rules/{name}" for name in sorted(prometheus.rule_files(render()))]
    assert config["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager.monitoring.svc:9093"]}]}]}


def test_only_the_selected_meshes_get_scrape_jobs_and_rules():
    """`--mesh linkerd` renders the exporter and Linkerd jobs, and Linkerd's rule files only."""
    files = render(meshes=["linkerd"])
    config = yaml.safe_load(files["deploy/prometheus/prometheus.yml"])
    assert [job["job_name"] for job in config["scrape_configs"]] == ["meshobs-exporter", "linkerd-proxies", "linkerd-control-plane"]
    assert config["rule_files"] == ["rules/linkerd-alerting-rules.yaml", "rules/linkerd-recording-rules.yaml"]


def test_amtool_accepts_the_alertmanager_config(deploy):
    """amtool check-config accepts alertmanager.yml: three inhibitions and a receiver per mesh."""
    amtool = require_binary("amtool")
    result = subprocess.run([amtool, "check-config", str(deploy / "alertmanager/alertmanager.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " - 3 inhibit rules\n - 5 receivers\n" in result.stdout


def _routes(deploy, **labels: str) -> str:
    return amtool_routes(deploy / "alertmanager/alertmanager.yml", **labels)


def test_alerts_route_by_severity_then_mesh(deploy):
    """Critical and page alerts go to the pager and to their mesh's channel; warnings only to the mesh's channel; no mesh label falls back."""
    assert _routes(deploy, alertname="MeshMTLSFailure", severity="critical", mesh="istio") == "meshobs-pager,meshobs-chat-istio"
    assert _routes(deploy, alertname="MeshErrorBudgetBurn", severity="page", mesh="consul") == "meshobs-pager,meshobs-chat-consul"
    assert _routes(deploy, alertname="MeshHighLatencyP99", severity="warning", mesh="linkerd") == "meshobs-chat-linkerd"
    assert _routes(deploy, alertname="Other", severity="ticket") == "meshobs-default"


def _states(port: int) -> dict[tuple[str, str, str, str, str], str]:
    """State by (alertname, mesh, severity, destination_namespace, destination_workload)."""
    status, body = http_get(f"http://127.0.0.1:{port}/api/v2/alerts")
    assert status == 200
    return {(a["labels"]["alertname"], a["labels"]["mesh"], a["labels"]["severity"],
             a["labels"].get("destination_namespace", ""), a["labels"].get("destination_workload", "")): a["status"]["state"]
            for a in json.loads(body)}


def _alert(name: str, severity: str, mesh: str, dst_namespace: str = "", dst_workload: str = "", **labels: str) -> dict:
    where = {"destination_namespace": dst_namespace, "destination_workload": dst_workload} if dst_workload else {}
    return {"labels": {"alertname": name, "severity": severity, "mesh": mesh, **where, **labels}}


def test_real_alertmanager_inhibits_as_configured(deploy, tmp_path, processes):
    """A real Alertmanager with the rendered config suppresses the security alerts of exactly the workload whose proxy the exporter cannot read (not its mesh's other workloads, not another namespace's namesake), and warnings under a critical of the same alert."""
    am = run_alertmanager(processes, deploy / "alertmanager/alertmanager.yml", tmp_path)
    port = am.port
    am.post([
        # as the rule renders it: the proxy's namespace and workload under both names
        _alert("MeshExporterTargetDown", "warning", "istio", "shop", "reviews", namespace="shop", workload="reviews"),
        _alert("MeshMTLSFailure", "critical", "istio", "shop", "reviews", reason="untrusted_cert"),
        _alert("MeshUnauthorizedAccessBurst", "critical", "istio", "shop", "reviews"),
        _alert("MeshUnauthorizedAccessSustained", "warning", "istio", "shop", "reviews"),
        _alert("MeshMTLSFailure", "critical", "istio", "shop", "ratings", reason="untrusted_cert"),
        _alert("MeshPlaintextTraffic", "warning", "istio", "payments", "reviews"),
        _alert("MeshMTLSFailure", "critical", "linkerd", "shop", "reviews", reason="untrusted_cert"),
        _alert("MeshHighErrorRate", "critical", "istio", destination_namespace="shop", destination_service="reviews"),
        _alert("MeshCertificateExpiringSoon", "critical", "linkerd", "shop", "web", cert="leaf"),
        _alert("MeshCertificateExpiringSoon", "warning", "linkerd", "shop", "web", cert="leaf"),
    ])

    expected = {
        ("MeshExporterTargetDown", "istio", "warning", "shop", "reviews"): "active",
        # the exporter cannot read this workload's proxy: its exporter-fed alerts are held back
        ("MeshMTLSFailure", "istio", "critical", "shop", "reviews"): "suppressed",
        ("MeshUnauthorizedAccessBurst", "istio", "critical", "shop", "reviews"): "suppressed",
        ("MeshUnauthorizedAccessSustained", "istio", "warning", "shop", "reviews"): "suppressed",
        # another workload of the same mesh, and a namesake in another namespace: not inhibited
        ("MeshMTLSFailure", "istio", "critical", "shop", "ratings"): "active",
        ("MeshPlaintextTraffic", "istio", "warning", "payments", "reviews"): "active",
        ("MeshMTLSFailure", "linkerd", "critical", "shop", "reviews"): "active",  # another mesh
        ("MeshHighErrorRate", "istio", "critical", "shop", ""): "active",  # not read from the exporter
        ("MeshCertificateExpiringSoon", "linkerd", "critical", "shop", "web"): "active",
        ("MeshCertificateExpiringSoon", "linkerd", "warning", "shop", "web"): "suppressed",  # the critical one covers it
    }
    # Alerts show as active until Alertmanager has processed the inhibiting ones: poll for the
    # settled picture rather than taking the first complete one.
    seen = []

    def settled():
        seen.append(_states(port))
        return seen[-1] == expected

    wait_until(settled, timeout=20, what="alertmanager to apply the inhibitions")
    assert seen[-1] == expected


def test_cluster_setting_labels_every_scrape_job():
    """deploy.cluster adds the configured cluster label to every job's targets, as an external label, and to every operator monitor; by default every job sets cluster="default"; with none set, nothing does."""
    files = render(config.from_dict({"cluster_label": "k8s_cluster", "deploy": {"cluster": "eu-1"}}))
    prometheus_yml = yaml.safe_load(files["deploy/prometheus/prometheus.yml"])
    jobs = prometheus_yml["scrape_configs"]
    assert all(job["relabel_configs"][-1] == {"target_label": "k8s_cluster", "replacement": "eu-1"} for job in jobs)
    assert prometheus_yml["global"]["external_labels"] == {"k8s_cluster": "eu-1"}
    monitors = [yaml.safe_load(content) for path, content in files.items()
                if path.startswith("deploy/operator/") and ("monitor-" in path)]
    endpoints = [e for m in monitors for e in m["spec"].get("podMetricsEndpoints", m["spec"].get("endpoints", []))]
    assert {m["kind"] for m in monitors} == {"PodMonitor", "ServiceMonitor"}
    assert all(e["relabelings"][-1] == {"targetLabel": "k8s_cluster", "replacement": "eu-1"} for e in endpoints)
    assert "external_labels" not in yaml.safe_load(render(config.from_dict({"deploy": {"cluster": ""}}))[
        "deploy/prometheus/prometheus.yml"])["global"]
    default = yaml.safe_load(render()["deploy/prometheus/prometheus.yml"])["scrape_configs"]
    assert all(job["relabel_configs"][-1] == {"target_label": "cluster", "replacement": "default"} for job in default)
    none = yaml.safe_load(render(config.from_dict({"deploy": {"cluster": ""}}))["deploy/prometheus/prometheus.yml"])
    assert not [rule for job in none["scrape_configs"] for rule in job["relabel_configs"]
                if rule.get("target_label") == "cluster"]


def test_every_alert_name_in_routes_and_inhibitions_is_rendered(artefacts, deploy):
    """Each alert name the Alertmanager config matches on is an alert of the rendered rule files."""
    import re

    rendered = {rule["alert"] for path, content in artefacts.items() if path.startswith("alerts/")
                for group in yaml.safe_load(content)["groups"] for rule in group["rules"] if "alert" in rule}
    text = (deploy / "alertmanager/alertmanager.yml").read_text()
    named = {name for match in re.findall(r'alertname=~?"([^"]+)"', text) for name in match.split("|")}
    assert named == {"MeshExporterTargetDown", "MeshMTLSFailure", "MeshUnauthorizedAccessBurst",
                     "MeshUnauthorizedAccessSustained", "MeshPlaintextTraffic", "MeshCertificateExpiringSoon",
                     "MeshErrorBudgetBurn"}
    assert named <= rendered
