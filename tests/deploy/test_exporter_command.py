"""The exporter started with exactly the command and arguments of the rendered manifests, in the
environment the pod would have, against a small HTTPS server speaking the kube-apiserver's pod
list/watch protocol (no kube-apiserver runs here; tests/exporter/kube_api.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from meshobs import config
from tests.deploy.conftest import render
from tests.exporter.kube_api import KubeApi, pod
from tests.support.procs import free_port, http_get, require_binary, wait_until

ISTIO = {"sidecar.istio.io/status": "{}"}


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of command and args: defined variables only, $$ escapes."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def _container(files: dict[str, bytes], path: str) -> dict:
    (workload,) = [doc for doc in yaml.safe_load_all(files[path]) if doc]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _argv(container: dict, pod_env: dict[str, str], secrets: Path) -> list[str]:
    argv = [_expand(part, pod_env) for part in container["command"] + container["args"]]
    listen = argv.index("--listen") + 1
    # The changes: tests bind loopback only (the port is the manifest's), and the Secret the
    # kubelet would mount is a file under `secrets`.
    assert argv[listen].startswith("0.0.0.0:")
    argv[listen] = argv[listen].replace("0.0.0.0:", "127.0.0.1:", 1)
    key = argv.index("--fluentd-shared-key-file") + 1
    (mount,) = [m["mountPath"] for m in container["volumeMounts"] if argv[key].startswith(m["mountPath"] + "/")]
    argv[key] = str(secrets / argv[key].removeprefix(mount + "/"))
    Path(argv[key]).write_text("test-shared-key\n")
    return [require_binary(argv[0]), *argv[1:]]


def _downward_env(container: dict, ordinal: int) -> dict[str, str]:
    """The container's env as the kubelet fills it for pod `<name>-<ordinal>`."""
    env = {}
    for var in container.get("env", []):
        field = var["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
        env[var["name"]] = str(ordinal)
    return env


def _config(port: int, **deploy: object) -> config.Config:
    # A 1s interval (a valid setting, carried by the manifest's args) keeps the test short.
    return config.from_dict({"deploy": {"exporter_port": port, "scrape_interval": "1s", **deploy}})


ALL_PODS = {f"127.0.0.{10 + i}:15090" for i in range(6)}


@pytest.fixture
def kube(tmp_path):
    pods = [pod(f"reviews-{i}", "shop", f"127.0.0.{10 + i}", ISTIO, labels={"app": f"reviews-{i}"}) for i in range(6)]
    api = KubeApi(tmp_path, pods)
    yield api
    api.stop()


def _targets(port: int) -> set[str]:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return set(re.findall(r'^meshobs_target_up\{[^}]*instance="([^"]+)"', body.decode(), re.M))


def _start(processes, tmp_path, kube, container, ordinal, port, name):
    pod_env = _downward_env(container, ordinal)
    process = processes(_argv(container, pod_env, tmp_path), tmp_path / f"{name}.log", env={**os.environ, **kube.env(), **pod_env})
    process.wait_ready(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, what=f"{name} /readyz")
    assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    return process


def test_deployment_command_line_runs_the_exporter(processes, tmp_path, kube):
    """The Deployment's command and args start an exporter that lists pods with its token and serves /readyz, /healthz and every meshed pod on /metrics."""
    port = free_port()
    files = render(_config(port))
    container = _container(files, "deploy/exporter/deployment/deployment.yaml")
    assert container["command"] == ["meshobs"]
    _start(processes, tmp_path, kube, container, 0, port, "exporter")
    wait_until(lambda: _targets(port) == ALL_PODS, timeout=15, what="every listed pod on /metrics")
    assert {method for method, _, _ in kube.requests} == {"GET"}
    assert kube.requests[0][1:] == ("/api/v1/pods?limit=500&fieldSelector=status.phase%3DRunning", "Bearer test-token")


def test_statefulset_replicas_split_the_pods_between_their_shards(processes, tmp_path, kube):
    """Each StatefulSet replica, given its ordinal through the pod-index label, scrapes its own shard: together all pods, none twice."""
    ports = [free_port(), free_port()]
    for ordinal, port in enumerate(ports):
        files = render(_config(port, shards=2))
        container = _container(files, "deploy/exporter/sharded/statefulset.yaml")
        assert container["args"][-2:] == ["--shard", "$(MESHOBS_SHARD_INDEX)/2"]
        _start(processes, tmp_path, kube, container, ordinal, port, f"exporter-{ordinal}")
    wait_until(lambda: _targets(ports[0]) | _targets(ports[1]) == ALL_PODS, timeout=15, what="all pods across the shards")
    shards = [_targets(port) for port in ports]
    assert not shards[0] & shards[1]
    assert shards[0] and shards[1]
