"""Grafana provisioning: a Prometheus datasource, one file provider per mesh folder, the
dashboards beside them, the same dashboards as ConfigMaps for the Grafana dashboard sidecar,
and a script that proves a real Grafana loads them all.

The provisioning files assume the rendered `deploy/grafana/dashboards` folder is mounted at
GRAFANA_DASHBOARDS_PATH and `deploy/grafana/provisioning` at /etc/grafana/provisioning.
"""

from __future__ import annotations

from importlib import resources
from pathlib import PurePosixPath

from meshobs.config import Config
from meshobs.meshes import Dialect
from meshobs.render.deploy.common import GRAFANA_DASHBOARDS_PATH, kustomization, labels, yaml_file

DATASOURCE_UID = "meshobs-prometheus"
# The sidecar (kiwigrid k8s-sidecar, as in the Grafana and kube-prometheus-stack charts) picks
# up ConfigMaps with this label; the folder annotation is the charts' `folderAnnotation`.
SIDECAR_LABEL = "grafana_dashboard"
FOLDER_ANNOTATION = "grafana_folder"


def dashboards_of(artefacts: dict[str, bytes], mesh: str) -> dict[str, bytes]:
    prefix = f"dashboards/{mesh}/"
    return {PurePosixPath(p).name: c for p, c in sorted(artefacts.items()) if p.startswith(prefix) and p.endswith(".json")}


def _datasources(cfg: Config) -> dict:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": cfg.datasource,
                "type": "prometheus",
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "url": cfg.deploy.prometheus_url,
                "isDefault": True,
                "editable": False,
                "jsonData": {"timeInterval": cfg.deploy.scrape_interval},
            }
        ],
    }


def _providers(dialects: list[Dialect]) -> dict:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": f"meshobs-{d.name}",
                "orgId": 1,
                "folder": d.title,
                "folderUid": f"meshobs-{d.name}",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": f"{GRAFANA_DASHBOARDS_PATH}/{d.name}"},
            }
            for d in dialects
        ],
    }


def _config_map(cfg: Config, dialect: Dialect, name: str, content: bytes) -> dict:
    stem = name.removesuffix(".json")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"meshobs-dashboard-{dialect.name}-{stem}",
            "namespace": cfg.deploy.monitoring_namespace,
            "labels": {**labels("meshobs-dashboards", "grafana"), SIDECAR_LABEL: "1"},
            "annotations": {FOLDER_ANNOTATION: dialect.title},
        },
        "data": {f"{dialect.name}-{name}": content.decode()},
    }


def render(cfg: Config, dialects: list[Dialect], artefacts: dict[str, bytes]) -> dict[str, bytes]:
    files = {
        "deploy/grafana/provisioning/datasources/meshobs.yaml": yaml_file(_datasources(cfg)),
        "deploy/grafana/provisioning/dashboards/meshobs.yaml": yaml_file(_providers(dialects)),
    }
    maps = []
    for dialect in dialects:
        for name, content in dashboards_of(artefacts, dialect.name).items():
            files[f"deploy/grafana/dashboards/{dialect.name}/{name}"] = content
            maps.append(_config_map(cfg, dialect, name, content))
    files["deploy/grafana/dashboard-configmaps.yaml"] = yaml_file(*maps)
    files["deploy/grafana/kustomization.yaml"] = kustomization(["dashboard-configmaps.yaml"])
    # A real module of ours (standard library only), shipped as-is so users run it without meshobs.
    files["deploy/grafana/check_provisioning.py"] = (resources.files(__package__) / "check_provisioning.py").read_bytes()
    return files
