"""Grafana provisioning: a Prometheus datasource, one file provider per mesh folder, the
dashboards beside them, the same dashboards as ConfigMaps for the Grafana dashboard sidecar,
and a script that proves a real Grafana loads them all.

The provisioning files assume the rendered `deploy/grafana/dashboards` folder is mounted at
GRAFANA_DASHBOARDS_PATH and `deploy/grafana/provisioning` at /etc/grafana/provisioning.
"""

from __future__ import annotations

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
    files["deploy/grafana/check_provisioning.py"] = _CHECK_SCRIPT.encode()
    return files


_CHECK_SCRIPT = '''\
#!/usr/bin/env python3
"""Start Grafana with the rendered provisioning and fail unless it lists every dashboard.

Rendered by meshobs. Usage, from the folder holding deploy/:
    python3 deploy/grafana/check_provisioning.py [--engine docker|podman] [--image IMAGE]
or against a Grafana already started with these files mounted:
    python3 deploy/grafana/check_provisioning.py --url http://127.0.0.1:3000 --logs FILE
Standard library only, so CI needs nothing but Python and a container engine.
"""

import argparse
import base64
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
# Grafana logs provisioning failures as logfmt lines with a provisioning logger at error level.
ERROR_LINE = re.compile(r"level=(error|crit)\\b.*logger=provisioning|logger=provisioning\\S*.*level=(error|crit)\\b")


def expected_uids(dashboards):
    uids = {}
    for path in sorted(dashboards.glob("*/*.json")):
        uids[json.loads(path.read_text())["uid"]] = path.relative_to(dashboards).as_posix()
    return uids


def listed_uids(url, user, password):
    request = urllib.request.Request(f"{url}/api/search?type=dash-db&limit=5000")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return {item["uid"]: item for item in json.load(response)}


def provisioning_errors(log_text):
    return [line for line in log_text.splitlines() if ERROR_LINE.search(line)]


def wait_for_dashboards(url, user, password, expected, timeout):
    deadline = time.monotonic() + timeout
    listed, last_error = {}, None
    while time.monotonic() < deadline:
        try:
            listed = listed_uids(url, user, password)
            if set(expected) <= set(listed):
                return listed, None
        except OSError as exc:  # not up yet
            last_error = exc
        time.sleep(1)
    return listed, last_error


def start_container(engine, image, port):
    argv = [
        engine, "run", "--detach", "--rm", "--publish", f"127.0.0.1:{port}:3000",
        "--volume", f"{HERE / 'provisioning'}:/etc/grafana/provisioning:ro",
        "--volume", f"{HERE / 'dashboards'}:''' + GRAFANA_DASHBOARDS_PATH + ''':ro",
        "--env", "GF_AUTH_ANONYMOUS_ENABLED=false",
        image,
    ]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default=shutil.which("docker") and "docker" or "podman")
    parser.add_argument("--image", default="docker.io/grafana/grafana:11.6.0")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--url", help="check this running Grafana instead of starting one")
    parser.add_argument("--logs", type=pathlib.Path, help="with --url: Grafana's log file to scan for provisioning errors")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()

    expected = expected_uids(HERE / "dashboards")
    if not expected:
        print(f"no dashboards under {HERE / 'dashboards'}", file=sys.stderr)
        return 1
    container = None
    url = args.url
    if url is None:
        container = start_container(args.engine, args.image, args.port)
        url = f"http://127.0.0.1:{args.port}"
    try:
        listed, error = wait_for_dashboards(url, args.user, args.password, expected, args.timeout)
        if container:
            logs = subprocess.run([args.engine, "logs", container], capture_output=True, text=True)
            log_text = logs.stdout + logs.stderr
        else:
            log_text = args.logs.read_text() if args.logs else ""
    finally:
        if container:
            subprocess.run([args.engine, "stop", container], capture_output=True)
    problems = [f"dashboard {uid} ({path}) is not listed by {url}/api/search" for uid, path in expected.items() if uid not in listed]
    if error and problems:
        problems.append(f"last error talking to Grafana: {error}")
    problems += [f"provisioning error logged: {line}" for line in provisioning_errors(log_text)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"Grafana lists all {len(expected)} dashboards, no provisioning error logged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
