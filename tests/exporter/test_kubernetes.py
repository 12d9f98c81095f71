"""Kubernetes pod discovery against a server speaking the apiserver's list/watch protocol."""

from __future__ import annotations

import os
import sys

import pytest

from meshobs.exporter.pods import pod_target
from tests.exporter import faults
from tests.exporter.kube_api import KubeApi, pod
from tests.exporter.running import RunningExporter, start_exporter
from tests.support.procs import free_port, http_get, wait_until

ISTIO = {"sidecar.istio.io/status": '{"containers":["istio-proxy"]}'}
LINKERD = {"linkerd.io/proxy-version": "stable-2.14.10"}
CONSUL = {"consul.hashicorp.com/connect-inject-status": "injected"}


def test_each_mesh_is_recognised_with_its_port_path_and_workload():
    """Istio → 15090 /stats/prometheus, Linkerd → 4191 /metrics, Consul → 20200 /metrics; unmeshed or pending pods are skipped."""
    istio = pod_target(pod("reviews-7f9c-abcde", "shop", "10.0.0.1", ISTIO, ("ReplicaSet", "reviews-7f9c"),
                           {"pod-template-hash": "7f9c"}))
    assert (istio.url, istio.mesh, istio.namespace, istio.workload) == (
        "http://10.0.0.1:15090/stats/prometheus", "istio", "shop", "reviews")
    linkerd = pod_target(pod("web-0", "shop", "10.0.0.2", LINKERD, ("StatefulSet", "web")))
    assert (linkerd.url, linkerd.mesh, linkerd.workload) == ("http://10.0.0.2:4191/metrics", "linkerd", "web")
    consul = pod_target(pod("api-0", "shop", "10.0.0.3", CONSUL, ("StatefulSet", "api"), labels={"app": "other"}))
    assert (consul.url, consul.mesh, consul.workload) == ("http://10.0.0.3:20200/metrics", "consul", "api")
    assert pod_target(pod("plain", "shop", "10.0.0.4")) is None
    assert pod_target(pod("pending", "shop", "", ISTIO, phase="Pending")) is None


@pytest.fixture
def kube(tmp_path):
    api = KubeApi(tmp_path, [
        pod("reviews-1", "shop", "127.0.0.2", ISTIO, ("ReplicaSet", "reviews-7f9c"), {"pod-template-hash": "7f9c"}),
        pod("web-0", "shop", "127.0.0.3", LINKERD, ("StatefulSet", "web")),
        pod("plain", "shop", "127.0.0.4"),
    ])
    yield api
    api.stop()


def test_list_then_watch_adds_and_removes_targets_with_get_requests_only(processes, tmp_path, kube):
    """Listed meshed pods become targets; watched ADDED and DELETED events add and remove them; only authenticated GETs are sent."""
    exporter = start_exporter(processes, tmp_path, "--kubernetes", "--scrape-interval", "100ms", "--scrape-timeout", "500ms",
                              env={**os.environ, **kube.env()})

    def instances():
        return {dict(items)["instance"] for (name, items) in exporter.samples() if name == "meshobs_target_up"}

    wait_until(lambda: instances() == {"127.0.0.2:15090", "127.0.0.3:4191"}, timeout=10, what="listed pods")
    wait_until(kube.watching.is_set, what="a watch")
    kube.push("ADDED", pod("api-0", "shop", "127.0.0.5", CONSUL, ("StatefulSet", "api")))
    kube.push("DELETED", pod("web-0", "shop", "127.0.0.3", LINKERD, ("StatefulSet", "web")))
    wait_until(lambda: instances() == {"127.0.0.2:15090", "127.0.0.5:20200"}, timeout=10, what="watched changes")
    assert exporter.value("meshobs_target_up", workload="reviews", mesh="istio", namespace="shop") == 0
    assert {method for method, _, _ in kube.requests} == {"GET"}
    assert {auth for _, _, auth in kube.requests} == {"Bearer test-token"}
    assert kube.requests[0][1] == "/api/v1/pods?limit=500&fieldSelector=status.phase%3DRunning"
    assert kube.requests[1][1].startswith(
        "/api/v1/pods?watch=1&resourceVersion=100&allowWatchBookmarks=true&fieldSelector=status.phase%3DRunning")


def test_namespaces_are_listed_and_watched_one_by_one(processes, tmp_path, kube):
    """With --kubernetes-namespace the exporter lists and watches only those namespaces' pods."""
    start_exporter(processes, tmp_path, "--kubernetes", "--kubernetes-namespace", "shop", "--kubernetes-namespace", "web",
                   "--scrape-interval", "100ms", "--scrape-timeout", "500ms", env={**os.environ, **kube.env()})
    wait_until(lambda: sum("watch=1" in path for _, path, _ in kube.requests) == 2, what="two watches")
    assert {path.split("?")[0] for _, path, _ in kube.requests} == {"/api/v1/namespaces/shop/pods", "/api/v1/namespaces/web/pods"}


def _ready_after_a_held_list(processes, tmp_path, kube, *args: str) -> RunningExporter:
    """Start the exporter while the pod list is held back; check /readyz is 503 until the list
    comes, then wait for 200."""
    kube.list_gate.clear()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = processes([sys.executable, "-m", "meshobs", "exporter", "--listen", f"127.0.0.1:{port}", "--kubernetes", *args],
                        tmp_path / "exporter.log", env={**os.environ, **kube.env()})
    process.wait_ready(lambda: http_get(f"{url}/healthz")[0] == 200, what="exporter /healthz")
    wait_until(lambda: kube.requests, what="the first (held) pod list")
    assert http_get(f"{url}/readyz")[0] == 503
    kube.list_gate.set()
    process.wait_ready(lambda: http_get(f"{url}/readyz")[0] == 200, what="exporter /readyz")
    return RunningExporter(process, port)


def test_ready_only_once_the_listed_pods_have_been_scraped(processes, tmp_path, kube):
    """/readyz answers 503 while the pod list is pending and 200 only once the listed pods have been scraped."""
    exporter = _ready_after_a_held_list(processes, tmp_path, kube, "--scrape-interval", "30s", "--scrape-timeout", "500ms")
    instances = {dict(items)["instance"] for (name, items) in exporter.samples() if name == "meshobs_target_up"}
    assert instances == {"127.0.0.2:15090", "127.0.0.3:4191"}


def test_ready_only_after_a_cycle_that_started_after_the_pod_list(processes, tmp_path):
    """When the pod list arrives only after several empty cycles, /readyz turns 200 only once a cycle begun after it has scraped the pods (here: hanging proxies, read until their timeout)."""
    proxies = faults.FaultServers()
    hanging = proxies.add(faults.hang)
    port_annotation = {**CONSUL, "consul.hashicorp.com/prometheus-scrape-port": str(hanging)}
    kube = KubeApi(tmp_path, [pod(f"api-{i}", "shop", "127.0.0.1", port_annotation, ("StatefulSet", f"api{i}")) for i in range(2)])
    try:
        exporter = _ready_after_a_held_list(processes, tmp_path, kube, "--scrape-interval", "100ms", "--scrape-timeout", "1s")
        workloads = {dict(items)["workload"] for (name, items) in exporter.samples() if name == "meshobs_target_up"}
        assert workloads == {"api0", "api1"}
    finally:
        kube.stop()
        proxies.stop()
