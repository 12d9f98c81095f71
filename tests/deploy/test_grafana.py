"""Grafana provisioning as Grafana documents it, pointing at files that exist; the check script
that CI runs against a real Grafana, exercised here against a stand-in for Grafana's search API
(no Grafana or container engine runs on this machine)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from meshobs.render.deploy.common import GRAFANA_DASHBOARDS_PATH


def test_datasource_file_has_grafanas_provisioning_structure(deploy):
    """The datasource file is apiVersion 1 with one default Prometheus datasource named as the dashboards expect."""
    data = yaml.safe_load((deploy / "grafana/provisioning/datasources/meshobs.yaml").read_text())
    assert data["apiVersion"] == 1
    (source,) = data["datasources"]
    assert {k: source[k] for k in ("name", "type", "access", "url", "isDefault")} == {
        "name": "Prometheus", "type": "prometheus", "access": "proxy", "url": "http://prometheus.monitoring.svc:9090", "isDefault": True,
    }
    assert set(source) <= {"name", "type", "uid", "access", "url", "isDefault", "editable", "jsonData", "orgId", "version"}


def test_dashboard_providers_give_each_mesh_a_folder_of_existing_dashboards(artefacts, deploy):
    """One file provider per mesh, its options.path (mounted from deploy/grafana/dashboards) holding exactly that mesh's dashboards."""
    data = yaml.safe_load((deploy / "grafana/provisioning/dashboards/meshobs.yaml").read_text())
    assert data["apiVersion"] == 1
    folders = {}
    for provider in data["providers"]:
        assert provider["type"] == "file"
        assert set(provider) <= {"name", "orgId", "folder", "folderUid", "type", "disableDeletion", "allowUiUpdates",
                                 "updateIntervalSeconds", "options"}
        path = provider["options"]["path"]
        assert path.startswith(GRAFANA_DASHBOARDS_PATH + "/")
        local = deploy / "grafana/dashboards" / path.removeprefix(GRAFANA_DASHBOARDS_PATH + "/")
        folders[provider["folder"]] = sorted(p.name for p in local.glob("*.json"))
        for dashboard in local.glob("*.json"):
            assert dashboard.read_bytes() == artefacts[f"dashboards/{local.name}/{dashboard.name}"]
    names = ["clusters.json", "control-plane.json", "overview.json", "proxy.json", "security.json", "service.json", "workload.json"]
    ambient = sorted(names + ["waypoint.json", "ztunnel.json"])  # Istio's ambient data planes
    assert folders == {"Istio": ambient, "Linkerd": names, "Consul": names}


class _StandIn:
    """Answers /api/search with the given uids, as Grafana's search API does (a list of hits)."""

    def __init__(self, uids: list[str]):
        hits = json.dumps([{"uid": uid, "type": "dash-db", "title": uid} for uid in uids]).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                assert self.path.startswith("/api/search?")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(hits)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _uids(deploy: Path) -> list[str]:
    return sorted(json.loads(p.read_text())["uid"] for p in (deploy / "grafana/dashboards").glob("*/*.json"))


def _check(deploy: Path, url: str, logs: Path) -> subprocess.CompletedProcess:
    script = deploy / "grafana/check_provisioning.py"
    return subprocess.run([sys.executable, str(script), "--url", url, "--logs", str(logs), "--timeout", "2"],
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def grafana_log(tmp_path) -> Path:
    log = tmp_path / "grafana.log"
    log.write_text('logger=provisioning.dashboard type=file name=meshobs-istio t=2026-01-01T00:00:00Z level=info msg="starting"\n')
    return log


def test_check_script_passes_when_every_dashboard_is_listed(deploy, grafana_log):
    """The CI check exits 0 when search lists every rendered uid and the log holds no provisioning error."""
    stand_in = _StandIn(_uids(deploy))
    result = _check(deploy, stand_in.url, grafana_log)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Grafana lists all 23 dashboards, no provisioning error logged\n"
    stand_in.server.shutdown()


def test_check_script_names_a_missing_dashboard_and_a_logged_provisioning_error(deploy, grafana_log):
    """The CI check fails naming the dashboard search does not list and the provisioning error line Grafana logged."""
    stand_in = _StandIn([uid for uid in _uids(deploy) if uid != "meshobs-istio-security"])
    error = ('logger=provisioning.dashboard type=file name=meshobs-istio t=2026-01-01T00:00:01Z level=error '
             'msg="failed to load dashboard from " file=/x.json error="invalid character"')
    grafana_log.write_text(grafana_log.read_text() + error + "\n")
    result = _check(deploy, stand_in.url, grafana_log)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"dashboard meshobs-istio-security (istio/security.json) is not listed by {stand_in.url}/api/search",
        f"provisioning error logged: {error}",
    ]
    stand_in.server.shutdown()


def test_workflow_runs_the_check_against_real_grafana_versions():
    """The user-facing workflow renders, compares with the committed deploy/ and runs the check script with docker."""
    workflow = yaml.safe_load((Path(__file__).parents[2] / ".github/workflows/grafana-provisioning.yaml").read_text())
    steps = workflow["jobs"]["grafana"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "meshobs build --out rendered" in runs
    assert "python3 deploy/grafana/check_provisioning.py --engine docker" in runs
    assert workflow["jobs"]["grafana"]["strategy"]["matrix"]["grafana"]
