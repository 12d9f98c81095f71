"""The exporter started with exactly the command and arguments of the rendered manifests, in the
environment the pod would have, against a small HTTPS server speaking the kube-apiserver's pod
list/watch protocol (no kube-apiserver runs here; tests/exporter/kube_api.py)."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pytest
import yaml

from meshobs import config
from tests.deploy.conftest import render
from tests.exporter import faults
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


class DenialSchedule:
    """A Consul sidecar's RBAC denial counter growing at `rate` per second (changeable), computed
    from the clock at each scrape: whenever the exporter scrapes, the rate it measures is exact."""

    def __init__(self, rate: float):
        self._lock = threading.Lock()
        self._since, self._base, self._rate = time.monotonic(), 0.0, rate

    def _value(self, now: float) -> float:
        return self._base + self._rate * (now - self._since)

    def set_rate(self, rate: float) -> None:
        with self._lock:
            now = time.monotonic()
            self._base, self._since, self._rate = self._value(now), now, rate

    def body(self) -> bytes:
        with self._lock:
            value = self._value(time.monotonic())
        return (f'envoy_http_rbac_denied{{local_cluster="cart"}} {value:.6f}\n'
                'envoy_listener_ssl_handshake{local_cluster="cart"} 1\n').encode()


def _gauge(exporter_port: int, name: str) -> float | None:
    """The cart workload's sample of `name` on the exporter's /metrics."""
    body = http_get(f"http://127.0.0.1:{exporter_port}/metrics")[1].decode()
    match = re.search(rf'^{name}\{{[^}}]*workload="cart"[^}}]*\}} (\S+)$', body, re.M)
    return float(match.group(1)) if match else None


def _distinct_values(exporter_port: int, name: str, count: int):
    """A condition: the cart workload's `name` has taken `count` distinct values (one per scrape that moved it)."""
    seen: list[float] = []

    def condition():
        value = _gauge(exporter_port, name)
        if value is not None and (not seen or seen[-1] != value):
            seen.append(value)
        return len(seen) >= count
    return condition


def test_non_default_thresholds_reach_the_exporter_through_the_rendered_args(processes, tmp_path):
    """With unauthorized_burst.factor 10 the rendered args carry every exporter threshold of the config, and an exporter started with them lets a 7x rise of denials pass while one started with the default config's args (factor 5) calls it a burst."""
    schedule = DenialSchedule(0.1)  # under the absolute 1/s and over the 0.05/s minimum: only the factor decides
    servers = faults.FaultServers()
    try:
        proxy_port = servers.add(faults.good(schedule.body), host="127.0.0.20")
        annotations = {"consul.hashicorp.com/connect-inject-status": "injected",
                       "consul.hashicorp.com/prometheus-scrape-port": str(proxy_port),
                       "consul.hashicorp.com/prometheus-scrape-path": "/stats/prometheus"}
        kube = KubeApi(tmp_path, [pod("cart-0", "shop", "127.0.0.20", annotations, owner=("StatefulSet", "cart"))])
        try:
            ports = {"default": free_port(), "factor10": free_port()}
            configs = {
                "default": _config(ports["default"]),
                "factor10": config.from_dict({"deploy": {"exporter_port": ports["factor10"], "scrape_interval": "1s"},
                                              "alerts": {"unauthorized_burst": {"factor": 10}}}),
            }
            containers = {name: _container(render(cfg), "deploy/exporter/deployment/deployment.yaml")
                          for name, cfg in configs.items()}
            assert containers["factor10"]["args"] == [
                "exporter", "--listen", f"0.0.0.0:{ports['factor10']}", "--kubernetes",
                "--scrape-interval", "1s", "--burst-denials-per-second", "1.0", "--burst-factor", "10.0",
                "--burst-min-denials-per-second", "0.05", "--burst-baseline-window", "1h",
                "--ca-expiry-window", "7d", "--leaf-warning-fraction", "0.1",
                "--fluentd", "fluentd.logging.svc:24224",
                "--fluentd-shared-key-file", "/var/run/secrets/meshobs/fluentd/shared-key",
            ]
            for name, container in containers.items():
                # no Fluentd runs here: events are dropped and counted, the series are what is checked
                _start(processes, tmp_path, kube, container, 0, ports[name], name)
            # each exporter learns the 0.1/s baseline from two measured rates (three scrapes)
            for port in ports.values():
                wait_until(_distinct_values(port, "meshobs_authz_denied_total", 3), timeout=20, what="the baseline")
            schedule.set_rate(0.7)
            wait_until(lambda: _gauge(ports["default"], "meshobs_authz_denied_burst") == 1, timeout=20,
                       what="the default exporter's burst at 7x the baseline")
            # the factor-10 exporter has measured the new rate twice by now: still no burst
            wait_until(_distinct_values(ports["factor10"], "meshobs_authz_denied_total", 3), timeout=20,
                       what="two rates at 0.7/s")
            assert _gauge(ports["factor10"], "meshobs_authz_denied_burst") == 0
            assert _gauge(ports["factor10"], "meshobs_authz_denied_bursts_total") == 0
            assert _gauge(ports["default"], "meshobs_authz_denied_bursts_total") == 1
        finally:
            kube.stop()
    finally:
        servers.stop()
