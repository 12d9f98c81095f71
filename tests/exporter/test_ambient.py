"""Istio ambient mode against the real exporter process: ztunnel and waypoint pods found through
the list/watch test server, their replayed answers (tests/support/ambientdata.py, ztunnel's and
Istio's real names and labels) served on loopback, and what a ztunnel or waypoint may claim."""

from __future__ import annotations

import os
import time

from tests.exporter import faults
from tests.exporter.kube_api import KubeApi, pod
from tests.exporter.running import start_exporter
from tests.support import ambientdata

ELAPSED = 100.0  # seconds of replayed traffic in every answer
AMBIENT = {"ambient.istio.io/redirection": "enabled"}
WAYPOINT_LABELS = {"gateway.istio.io/managed": "istio.io-mesh-controller",
                   "gateway.networking.k8s.io/gateway-name": "waypoint", "pod-template-hash": "6c9f8d7b5"}


def placed(spec: dict, node: str, port_name: str | None = None, port: int | None = None) -> dict:
    """`spec` on `node`, its istio-proxy container with the named metrics port."""
    spec["spec"]["nodeName"] = node
    if port_name:
        spec["spec"]["containers"] = [{"name": "istio-proxy", "ports": [{"name": port_name, "containerPort": port}]}]
    return spec


def ztunnel_pod(name: str, namespace: str, node: str, port: int, owner=("DaemonSet", "ztunnel")) -> dict:
    return placed(pod(name, namespace, "127.0.0.1", {}, owner, labels={"app": "ztunnel"}), node, "ztunnel-stats", port)


def captured(workload: ambientdata.Workload, **labels: str) -> dict:
    """An ambient application pod of `workload` (a Deployment's) on its node: not scraped, but
    what the ztunnel of that node may speak for."""
    spec = pod(f"{workload.name}-5d9c7-abcde", workload.namespace, "10.1.0.9", dict(AMBIENT),
               ("ReplicaSet", f"{workload.name}-5d9c7"), labels={"pod-template-hash": "5d9c7", **labels})
    return placed(spec, workload.node)


def ztunnel_line(reporter: str, namespace: str, workload: str, flags: str, value: float) -> str:
    side = "destination" if reporter == "destination" else "source"
    return (f'istio_tcp_connections_closed_total{{reporter="{reporter}",{side}_workload="{workload}",'
            f'{side}_workload_namespace="{namespace}",response_flags="{flags}",'
            f'connection_security_policy="mutual_tls"}} {value:g}\n')


def test_ztunnels_and_waypoints_are_read_per_workload_and_only_for_what_they_may_speak_for(processes, tmp_path, proxies):
    """ztunnel L4 denials, TLS failures and plaintext land on the destination workloads of its node, a waypoint's on itself in its namespace; look-alikes are rejected and counted, claims for pods on other nodes or with odd names are refused and counted."""
    now = time.time()
    node_a, node_b = (ambientdata._ztunnel(node, now).render(ELAPSED) for node in ambientdata.NODES)
    # node-a's ztunnel also claims: intruder (on node-a: counted), accounts (on node-b: refused),
    # an `unknown` workload and a 5,000-character one (bad names)
    node_a += "".join((
        ztunnel_line("destination", "bank", "x" * 5000, "DENY", 1000),
        ztunnel_line("destination", "other", "intruder", "DENY", 4),
        ztunnel_line("destination", "bank", "accounts", "DENY", 1000),
        ztunnel_line("destination", "bank", "unknown", "DENY", 1000),
    ))
    forged = ztunnel_line("destination", "bank", "postgres", "DENY", 1e6).encode()
    waypoint = ambientdata._waypoint(now).render(ELAPSED)
    # a waypoint in `attacker` answering for payments' workloads
    attacker = (
        'istio_requests_total{reporter="destination",connection_security_policy="none",'
        'destination_workload="ledger",destination_workload_namespace="payments"} 99\n'
        'envoy_http_rbac{authz_enforce_result="denied",http_conn_manager_prefix="x"} 5\n'
    )
    ports = {name: proxies.add(faults.good(body.encode() if isinstance(body, str) else body)) for name, body in (
        ("node-a", node_a), ("node-b", node_b), ("waypoint", waypoint), ("attacker", attacker),
        ("look-alike", forged), ("bare", forged))}
    pods = [
        ztunnel_pod("ztunnel-aaaaa", "istio-system", "node-a", ports["node-a"]),
        ztunnel_pod("ztunnel-bbbbb", "istio-system", "node-b", ports["node-b"]),
        ztunnel_pod("ztunnel-ccccc", "attacker", "node-b", ports["look-alike"]),
        ztunnel_pod("ztunnel-ddddd", "istio-system", "node-b", ports["bare"], owner=None),
        placed(pod("waypoint-6c9f8d7b5-k2xq4", "bank", "127.0.0.1", {}, ("ReplicaSet", "waypoint-6c9f8d7b5"),
                   labels=WAYPOINT_LABELS), "node-a", "http-envoy-prom", ports["waypoint"]),
        placed(pod("waypoint-6c9f8d7b5-zzzzz", "attacker", "127.0.0.1", {}, ("ReplicaSet", "waypoint-6c9f8d7b5"),
                   labels=WAYPOINT_LABELS), "node-a", "http-envoy-prom", ports["attacker"]),
        *(captured(w) for w in (ambientdata.WEB, ambientdata.ACCOUNTS, ambientdata.POSTGRES, ambientdata.INTRUDER)),
    ]
    kube = KubeApi(tmp_path, pods)
    try:
        exporter = start_exporter(processes, tmp_path, "--kubernetes", "--scrape-interval", "100ms",
                                  "--scrape-timeout", "500ms", env={**os.environ, **kube.env()})

        def value(name: str, namespace: str, workload: str, **labels: str) -> float | None:
            return exporter.value(name, mesh="istio", namespace=namespace, workload=workload, **labels)

        # postgres (node-b): intruder's connections denied at L4, plaintext from legacy/batch
        assert value("meshobs_authz_denied_total", "bank", "postgres") == 0.5 * 0.95 * ELAPSED
        assert value("meshobs_plaintext_requests_total", "bank", "postgres") == 0.3 * ELAPSED
        assert value("meshobs_tls_handshakes_total", "bank", "postgres") == (1.0 + 0.5) * ELAPSED
        # accounts (node-b): the TLS failure between the ztunnels; node-a's claim of 1000 denials refused
        assert value("meshobs_tls_handshake_failures_total", "bank", "accounts", reason="other") == 0.2 * 0.95 * ELAPSED
        assert value("meshobs_authz_denied_total", "bank", "accounts") == 0
        assert value("meshobs_authz_denied_total", "other", "intruder") == 4
        # the waypoint: its RBAC denials are its own; the attacker's waypoint speaks for itself only
        assert value("meshobs_authz_denied_total", "bank", "waypoint") == 1.0 * ELAPSED
        assert value("meshobs_authz_allowed_total", "bank", "waypoint") == (8.0 + 0.8 + 3.0) * ELAPSED
        assert value("meshobs_authz_denied_total", "attacker", "waypoint") == 5
        assert value("meshobs_plaintext_requests_total", "attacker", "waypoint") == 99
        samples = exporter.samples()
        assert not [key for key in samples if ("namespace", "payments") in key[1]]
        assert not [key for key in samples if ("namespace", "attacker") in key[1] and ("workload", "ztunnel") in key[1]]
        # ambient workloads have no certificate series (ztunnel exposes none): nothing to call missing
        assert not [key for key in samples if key[0] == "meshobs_cert_expiry_timestamp_seconds"]
        assert exporter.value("meshobs_target_up", mesh="istio", namespace="istio-system", workload="ztunnel",
                              instance=f"127.0.0.1:{ports['node-b']}") == 1
        assert exporter.value("meshobs_discovery_rejected_total", reason="not_ztunnel") == 2
        refused = {reason: exporter.value("meshobs_ztunnel_claims_refused_total", reason=reason)
                   for reason in ("bad_name", "not_on_node", "too_many")}
        assert refused == {"bad_name": 2, "not_on_node": 1, "too_many": 0}
        # the look-alikes are never asked; the others only GET their metrics path
        requests = {line for _, line in proxies.requests}
        assert requests == {"GET /metrics HTTP/1.1", f"GET /stats/prometheus?{_waypoint_query()} HTTP/1.1"}
        log = exporter.process.log()
        assert log.count("pod 'attacker'/'ztunnel-ccccc' skipped (not_ztunnel: labelled app=ztunnel but not a "
                         "DaemonSet pod in istio-system)") == 1
        assert log.count(f"127.0.0.1:{ports['node-a']} (node 'node-a') speaks for 'bank'/'accounts': not counted "
                         "(not_on_node)") == 1
    finally:
        kube.stop()


def _waypoint_query() -> str:
    from meshobs.exporter.normalize import DIALECTS

    return DIALECTS["istio"].stats_query
