"""A waypoint read by the real exporter process from a real Envoy (mTLS and RBAC), found as
istiod's waypoint pod through the list/watch test server."""

from __future__ import annotations

import os

from tests.exporter.kube_api import KubeApi, pod
from tests.exporter.running import start_exporter
from tests.exporter.test_ambient import WAYPOINT_LABELS, placed
from tests.support.envoy import start_envoy
from tests.support.procs import wait_until


def test_a_waypoints_rbac_decisions_are_read_from_envoy_for_the_waypoint(processes, tmp_path):
    """A real Envoy's allowed and denied requests, on the waypoint pod's `http-envoy-prom` port, count for the waypoint Deployment in its namespace."""
    envoy = start_envoy(processes, tmp_path)
    waypoint = placed(pod("waypoint-6c9f8d7b5-k2xq4", "bank", "127.0.0.1", {}, ("ReplicaSet", "waypoint-6c9f8d7b5"),
                          labels=WAYPOINT_LABELS), "node-a", "http-envoy-prom", envoy.admin_port)
    kube = KubeApi(tmp_path, [waypoint])
    try:
        exporter = start_exporter(processes, tmp_path, "--kubernetes", "--scrape-interval", "100ms",
                                  env={**os.environ, **kube.env()})
        for _ in range(2):
            assert envoy.request(envoy.pki.allowed) == 200
        for _ in range(3):
            assert envoy.request(envoy.pki.denied) == 403
        labels = {"mesh": "istio", "namespace": "bank", "workload": "waypoint"}

        def counts():
            return (exporter.value("meshobs_authz_allowed_total", **labels),
                    exporter.value("meshobs_authz_denied_total", **labels))

        wait_until(lambda: counts() == (2, 3), timeout=10, what="the waypoint's RBAC decisions")
        assert exporter.value("meshobs_target_up", **labels, instance=f"127.0.0.1:{envoy.admin_port}") == 1
    finally:
        kube.stop()
