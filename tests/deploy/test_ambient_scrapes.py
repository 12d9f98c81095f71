"""The rendered Istio jobs on an ambient mesh, in a real Prometheus: every pod of the replayed
mixed layout (tests/support/ambientdata.py) is discovered by every pod job, as Kubernetes
discovery would, with its discovery labels given as static labels; relabelling keeps each pod in
exactly one job, and a waypoint cannot report for another namespace."""

from __future__ import annotations

import time

import yaml

from tests.exporter import faults
from tests.support import ambientdata
from tests.support.meshdata import Target, counter
from tests.support.prom import start_prometheus

POD_JOBS = ("istio-proxies", "istio-waypoints", "istio-ztunnels")
LIMITED = ("sample_limit", "label_limit", "label_value_length_limit")


def _meta(namespace: str, pod: str, port_name: str, controller: str, labels: dict, node: str = "node-a") -> dict:
    """What Prometheus's pod discovery attaches to a pod's port (pod labels sanitized as it does)."""
    meta = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": pod,
            "__meta_kubernetes_pod_container_name": "istio-proxy", "__meta_kubernetes_pod_container_port_name": port_name,
            "__meta_kubernetes_pod_controller_kind": controller, "__meta_kubernetes_pod_node_name": node}
    meta.update({"__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in k): v for k, v in labels.items()})
    return meta


def _serve(servers: faults.FaultServers, target: Target, meta: dict) -> dict:
    started = time.monotonic()
    port = servers.add(faults.good(lambda: target.render(time.monotonic() - started + 60).encode()))
    return {"targets": [f"127.0.0.1:{port}"], "labels": meta}


WAYPOINT_LABELS = {"gateway.istio.io/managed": "istio.io-mesh-controller", "gateway.networking.k8s.io/gateway-name": "waypoint"}


def test_each_ambient_pod_is_scraped_by_one_job_and_waypoints_report_only_for_their_namespace(processes, tmp_path, deploy):
    """ztunnels (istio-system, DaemonSet) go to istio-ztunnels with their node, the waypoint to istio-waypoints, sidecars and a bare pod wearing the waypoint label to istio-proxies; a waypoint in `attacker` claiming `bank` is recorded as `attacker`."""
    jobs = {job["job_name"]: job for job in yaml.safe_load((deploy / "prometheus/prometheus.yml").read_text())["scrape_configs"]}
    assert all(jobs[name][key] == jobs["istio-proxies"][key] for name in POD_JOBS for key in LIMITED)
    # Only istio-system is discovered for ztunnels (a pod elsewhere labelled app=ztunnel is never a target).
    assert jobs["istio-ztunnels"]["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["istio-system"]}}]
    ztunnel_a, ztunnel_b, waypoint, sidecar = ambientdata.ambient(time.time())
    claims = {"destination_workload_namespace": "payments", "destination_service_namespace": "payments",
              "destination_workload": "checkout", "response_code": "500"}
    liar = Target("/stats/prometheus", {}, "istio", "waypoint", waypoint.series + [
        counter("istio_requests_total", {"reporter": reporter, **claims}, 5.0) for reporter in ("destination", "source")])
    servers = faults.FaultServers()
    try:
        pods = [
            _serve(servers, ztunnel_a, _meta("istio-system", "ztunnel-node-a", "ztunnel-stats", "DaemonSet", {"app": "ztunnel"})),
            _serve(servers, ztunnel_b, _meta("istio-system", "ztunnel-node-b", "ztunnel-stats", "DaemonSet", {"app": "ztunnel"}, "node-b")),
            _serve(servers, waypoint, _meta("bank", "waypoint-6c9f8d7b5-k2xq4", "http-envoy-prom", "ReplicaSet", WAYPOINT_LABELS)),
            _serve(servers, liar, _meta("attacker", "waypoint-5d8f7-abcde", "http-envoy-prom", "ReplicaSet", WAYPOINT_LABELS)),
            _serve(servers, liar, _meta("attacker", "fake-waypoint", "http-envoy-prom", "", WAYPOINT_LABELS)),
            _serve(servers, sidecar, _meta("shop", "frontend-7d4b9c-x2x7q", "http-envoy-prom", "ReplicaSet", {"app": "frontend"})),
        ]
        settings = {name: {k: v for k, v in jobs[name].items() if k not in ("job_name", "kubernetes_sd_configs")}
                    for name in POD_JOBS}
        prometheus = start_prometheus(processes, tmp_path, {name: pods for name in POD_JOBS}, job_settings=settings)
        prometheus.wait_for("count(up) == 6 and count(scrape_samples_scraped > 0) == 6")
        assert {(s["metric"]["job"], s["metric"]["pod"], s["metric"].get("node"), s["metric"].get("waypoint"))
                for s in prometheus.query("up == 1")} == {
            ("istio-ztunnels", "ztunnel-node-a", "node-a", None),
            ("istio-ztunnels", "ztunnel-node-b", "node-b", None),
            ("istio-waypoints", "waypoint-6c9f8d7b5-k2xq4", None, "waypoint"),
            ("istio-waypoints", "waypoint-5d8f7-abcde", None, "waypoint"),
            ("istio-proxies", "fake-waypoint", None, None),
            ("istio-proxies", "frontend-7d4b9c-x2x7q", None, None),
        }
        # Whatever reporter a pod claims, in whichever job, the destination it reports for is its own namespace.
        reported = {(s["metric"]["pod"], s["metric"]["reporter"], s["metric"]["destination_workload_namespace"],
                     s["metric"]["destination_service_namespace"])
                    for s in prometheus.query('istio_requests_total{namespace!="shop"}')}
        assert reported == {
            ("waypoint-6c9f8d7b5-k2xq4", "waypoint", "bank", "bank"),
            *((pod, reporter, "attacker", "attacker") for pod in ("waypoint-5d8f7-abcde", "fake-waypoint")
              for reporter in ("waypoint", "destination")),
            *((pod, "source", "payments", "payments") for pod in ("waypoint-5d8f7-abcde", "fake-waypoint")),
        }
        # ...and a bare pod's destination workload is itself.
        assert {s["metric"]["destination_workload"] for s in prometheus.query('istio_requests_total{pod="fake-waypoint",reporter!="source"}')} == {
            "pod/fake-waypoint"}
        # The L4 denial is ztunnel's, at the destination, with response_flags="DENY".
        (denied,) = prometheus.query('istio_tcp_connections_failed_total{response_flags="DENY"}')
        assert (denied["metric"]["reporter"], denied["metric"]["source_workload"], denied["metric"]["destination_workload"],
                denied["metric"]["job"], denied["metric"]["node"]) == ("destination", "intruder", "postgres", "istio-ztunnels", "node-b")
    finally:
        servers.stop()
