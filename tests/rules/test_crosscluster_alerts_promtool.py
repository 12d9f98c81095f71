"""The alerts on the way between clusters, run by the real `promtool test rules` on series written in
each mesh's own names and labels: Istio's destination reporter naming both clusters, Linkerd's
outbound calls through a multicluster gateway and its service mirror's `gateway_alive`, Consul's
upstreams to a cluster peer and its servers' `consul_peering_healthy` (beside the unlabelled 0 every
Consul agent serves for it). Each fires on the bad case with the documented labels and annotations,
and stays silent when healthy, on a blip, when idle (0/0), on local calls, and when a Link or
peering is removed. tests/rules/test_alerts_victoria.py replays the same scenarios in vmalert."""

from __future__ import annotations

import pytest

from meshobs import cluster_signals as cs
from meshobs.meshes import DIALECTS
from meshobs.render import rules_crosscluster
from tests.rules.test_alerts_promtool import CFG, NS, _alert, _case, rule_files, run_promtool  # noqa: F401 (fixture)
from tests.rules.test_alerts_promtool import runbook_headings
from tests.rules.traffic import CLUSTER, CONSUL_NAMESPACE, consul_tags, constant, counter, series

REMOTE = "west"  # the other cluster: Istio's clusterName, a Linkerd Link's target, a Consul peer
ISTIO_HERE = "east"  # Istio's clusterName of the store's cluster c1 (the two names need not match)
CONSUL_HERE = "dc1"  # the Consul datacenter of the store's cluster c1 (consul_tags' datacenter)
CALLER, SVC = "web", "emoji"


def _pair(mesh: str, remote: bool) -> tuple[str, str]:
    """(source_cluster, destination_cluster) of a remote or a local call, in the mesh's own cluster names."""
    if mesh == "istio":  # counted by the destination, in c1: the caller is remote
        return (REMOTE if remote else ISTIO_HERE), ISTIO_HERE
    if mesh == "linkerd":  # the caller's own cluster is the store's cluster label
        return CLUSTER, REMOTE
    return CONSUL_HERE, (REMOTE if remote else CONSUL_HERE)


def calls(mesh: str, remote: bool, code: str, values: str) -> list[dict]:
    """Calls from `web` to `emoji` with response `code`, to the other cluster or within c1, as the
    mesh's proxy in c1 counts them (`values` in promtool notation)."""
    failed = code.startswith("5")
    source, destination = _pair(mesh, remote)
    if mesh == "istio":
        return [series("istio_requests_total", {
            "reporter": "destination", "source_cluster": source, "destination_cluster": destination,
            "source_workload": CALLER, "source_workload_namespace": NS, "destination_workload": SVC,
            "destination_workload_namespace": NS, "destination_service_name": SVC, "destination_service_namespace": NS,
            "response_code": code, "grpc_response_status": "", "connection_security_policy": "mutual_tls",
            "response_flags": "-"}, values)]
    if mesh == "linkerd":
        labels = {"direction": "outbound", "namespace": NS, "deployment": CALLER, "status_code": code, "tls": "true",
                  "classification": "failure" if failed else "success"}
        if remote:  # through the gateway: the mirrored endpoints' target labels; a local call has none
            labels.update(dst_target_cluster=destination, dst_target_service=SVC, dst_target_service_namespace=NS)
        else:
            labels.update(dst_namespace=NS, dst_service=SVC, dst_deployment=SVC)
        return [series("response_total", labels, values)]
    upstream = {"consul_destination_peer": REMOTE} if remote else {"consul_destination_datacenter": CONSUL_HERE}
    return [series("envoy_cluster_upstream_rq", {
        **consul_tags(CALLER, NS), "consul_destination_service": SVC, "consul_destination_namespace": CONSUL_NAMESPACE,
        **upstream, "envoy_response_code": code}, values)]


def cross_cluster_errors(mesh: str, title: str) -> list[dict]:
    name = "MeshCrossClusterErrors"
    source, destination = _pair(mesh, remote=True)

    def fires(percent: str) -> dict:
        return _alert(mesh, name, "warning", {"source_cluster": source, "destination_cluster": destination},
                      f"{title}: calls from cluster {source} to cluster {destination} fail",
                      f"{percent} of the requests from cluster {source} to cluster {destination} failed (5xx, failed "
                      "gRPC calls) over the last 5m (threshold 10%, at least 20 requests).")

    local_ok = calls(mesh, False, "200", counter((10, 20)))
    return [
        _case("bad: half the calls to the other cluster fail, local calls are fine",
              calls(mesh, True, "200", counter((5, 20))) + calls(mesh, True, "503", counter((5, 20))) + local_ok,
              "15m", name, [fires("50%")]),
        _case("healthy: 1% of the calls to the other cluster fail",
              calls(mesh, True, "200", counter((10, 20))) + calls(mesh, True, "503", counter((0.1, 20))) + local_ok,
              "15m", name, []),
        # 600 failures in the minute after 10m: the 5m ratio is high for less than `for`
        _case("blip: one minute of failures", calls(mesh, True, "200", counter((5, 20)))
              + calls(mesh, True, "503", "0x10 600x10") + local_ok, "16m", name, []),
        _case("idle: no call to the other cluster in the window (0/0 has no ratio)",
              calls(mesh, True, "200", constant(300, 20)) + calls(mesh, True, "503", constant(300, 20)) + local_ok,
              "15m", name, []),
        _case("low traffic: one failed call among six in 5 minutes",
              calls(mesh, True, "200", counter((0.02, 20))) + calls(mesh, True, "503", "0x15 1x5"), "20m", name, []),
        # MeshHighErrorRate judges a cluster's own calls; Linkerd does not count them as pairs at all
        _case("local calls failing: no pair between two clusters",
              calls(mesh, True, "200", counter((5, 20))) + calls(mesh, False, "200", counter((5, 20)))
              + calls(mesh, False, "503", counter((5, 20))), "15m", name, []),
    ]


_CONSUL_SERVER = {"namespace": "consul", "pod": "consul-server-0"}


def _declared(mesh: str) -> list[dict]:
    """What the mesh serves with no remote cluster: Consul agents serve the declared gauge unlabelled at 0."""
    return [series("consul_peering_healthy", _CONSUL_SERVER, constant(0, 20))] if mesh == "consul" else []


def _reachability(mesh: str, values: str) -> list[dict]:
    """The mesh's own judgement of the other cluster, as its controller in c1 serves it."""
    if mesh == "linkerd":  # the service mirror of the Link to `west`
        return [series("gateway_alive", {"namespace": "linkerd-multicluster", "pod": "linkerd-service-mirror-west-5d8",
                                         "target_cluster_name": REMOTE}, values)]
    return _declared(mesh) + [series("consul_peering_healthy", dict(_CONSUL_SERVER, peer_name=REMOTE, peer_id="4f1c2c3e"),
                                     values)]


def remote_cluster_unreachable(mesh: str, title: str) -> list[dict]:
    name = "MeshRemoteClusterUnreachable"
    if not cs.REMOTE_UP.available(DIALECTS[mesh]):  # Istio judges no remote cluster's reachability itself
        return [_case("never rendered", calls(mesh, True, "503", counter((5, 15))), "15m", name, [])]
    fires = _alert(mesh, name, "critical", {"destination_cluster": REMOTE},
                   f"{title}: cluster {CLUSTER} cannot reach cluster {REMOTE}",
                   f"{title} in cluster {CLUSTER} has judged cluster {REMOTE} unreachable for 5m (its multicluster "
                   "gateway does not answer the mesh's probes, or its peering is unhealthy): calls to the services it "
                   "exports fail or fail over.")
    removed = "a Link removed" if mesh == "linkerd" else "a peering deleted"
    return [
        _case("bad: unreachable for 10 minutes", _reachability(mesh, "1x4 0x15"), "15m", name, [fires]),
        _case("healthy", _reachability(mesh, constant(1, 15)), "15m", name, []),
        _case("blip: unreachable for two minutes", _reachability(mesh, "1x5 0x2 1x8"), "15m", name, []),
        # the series goes with the Link or peering (deleted, then expired by go-metrics): not an outage
        _case(f"{removed}: its series goes", _reachability(mesh, "1x5 stale"), "15m", name, []),
        _case(f"{removed} while unreachable: the alert resolves", _reachability(mesh, "1x2 0x8 stale"), "15m", name, []),
        _case("no remote cluster at all", _declared(mesh) + calls(mesh, False, "200", counter((1, 15))), "15m", name, []),
    ]


SCENARIOS = {
    "MeshRemoteClusterUnreachable": remote_cluster_unreachable,
    "MeshCrossClusterErrors": cross_cluster_errors,
}


def test_every_cross_cluster_alert_has_scenarios():
    """Every alert on the way between clusters is covered by a promtool scenario."""
    assert set(SCENARIOS) == set(rules_crosscluster.ALERT_NAMES)


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
def test_each_mesh_renders_the_cross_cluster_alerts_it_can_answer(mesh):
    """Every mesh alerts on failing calls between clusters; only Linkerd and Consul judge a remote cluster's reachability."""
    rendered = {a.name for a in rules_crosscluster.alerts(CFG, DIALECTS[mesh])}
    unreachable = {"MeshRemoteClusterUnreachable"} if mesh in ("linkerd", "consul") else set()
    assert rendered == {"MeshCrossClusterErrors"} | unreachable


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
@pytest.mark.parametrize("alertname", rules_crosscluster.ALERT_NAMES)
def test_cross_cluster_alert_fires_on_bad_and_stays_silent_otherwise(alertname, mesh, rule_files, tmp_path):  # noqa: F811
    """promtool agrees with each scenario: bad fires with exact labels and annotations, the rest stay silent."""
    run_promtool(rule_files[mesh], tmp_path, f"{mesh}-{alertname}", SCENARIOS[alertname](mesh, DIALECTS[mesh].title))


def test_every_cross_cluster_alert_has_a_runbook_section():
    """docs/runbooks.md has a section for each cross-cluster alert, the anchor its runbook_url points at."""
    assert set(rules_crosscluster.ALERT_NAMES) <= runbook_headings()
