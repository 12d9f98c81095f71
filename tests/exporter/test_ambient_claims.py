"""What a ztunnel's series and an ambient pod's fields may claim, below the exporter process:
discovery of ztunnel and waypoint pods, the per-workload split of ztunnel's counters, and the
bounds and checks on the workloads it names."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshobs.exporter.kubernetes import ApiServer, PodWatcher
from meshobs.exporter.normalize import DENIED, FAILURES, MAX_SPEAKERS, PLAINTEXT, ROLES, normalize
from meshobs.exporter.parse import PayloadError, Sample
from meshobs.exporter.pods import PodRejected, is_name, pod_target
from meshobs.exporter.state import BurstPolicy, State
from meshobs.exporter.targets import make_target
from tests.exporter.kube_api import pod
from tests.exporter.test_ambient import WAYPOINT_LABELS, captured, placed, ztunnel_pod
from tests.support import ambientdata

ZTUNNEL = ROLES["ztunnel"]
NODE_B = make_target("http://10.0.0.2:15020/metrics", "istio", "istio-system", "ztunnel", "ztunnel", "node-b")
CLOSED = "istio_tcp_connections_closed_total"


def deny(namespace: str, workload: str, value: float, reporter: str = "destination") -> Sample:
    side = "destination" if reporter == "destination" else "source"
    return Sample(CLOSED, {"reporter": reporter, f"{side}_workload_namespace": namespace, f"{side}_workload": workload,
                           "response_flags": "DENY"}, value)


def test_a_ztunnel_pod_is_read_on_its_named_metrics_port_with_its_node():
    """The ztunnel DaemonSet's pod in istio-system becomes a ztunnel target on its `ztunnel-stats` port, /metrics, with its node."""
    target = pod_target(ztunnel_pod("ztunnel-x", "istio-system", "node-b", 15020))
    assert target == make_target("http://127.0.0.1:15020/metrics", "istio", "istio-system", "ztunnel", "ztunnel", "node-b")


@pytest.mark.parametrize("spec, reason, message", [
    (ztunnel_pod("ztunnel-x", "default", "node-b", 15020), "not_ztunnel",
     "labelled app=ztunnel but not a DaemonSet pod in istio-system"),
    (ztunnel_pod("ztunnel-x", "istio-system", "node-b", 15020, owner=("ReplicaSet", "ztunnel-5d9c7")), "not_ztunnel",
     "labelled app=ztunnel but not a DaemonSet pod in istio-system"),
    (ztunnel_pod("ztunnel-x", "istio-system", "node-b", 99999), "bad_port", "port '99999' is not an integer 1-65535"),
    (ztunnel_pod("ztunnel-x", "istio-system", "node-b", "15020"), "bad_port", "port '15020' is not an integer 1-65535"),
    (ztunnel_pod("ztunnel-x", "istio-system", "NODE/../b", 15020), "bad_object", "node name 'NODE/../b' is not a Kubernetes name"),
    (placed(pod("waypoint-x", "bank", "127.0.0.1", {}, None, labels=WAYPOINT_LABELS), "node-a", "http-envoy-prom", 15090),
     "not_waypoint", "labelled gateway.istio.io/managed=istio.io-mesh-controller but not a Deployment's pod"),
])
def test_look_alike_and_malformed_ambient_pods_are_rejected_with_a_reason(spec, reason, message):
    """A ztunnel label outside istio-system or off a DaemonSet, a waypoint label on a bare pod, a bad named port or node name is rejected with its reason."""
    with pytest.raises(PodRejected) as caught:
        pod_target(spec)
    assert (caught.value.reason, str(caught.value)) == (reason, message)


def test_a_waypoint_pod_is_read_as_its_deployment_on_envoys_stats_port():
    """A waypoint pod owned by a ReplicaSet is the waypoint Deployment, read on `http-envoy-prom` like a sidecar."""
    spec = placed(pod("waypoint-6c9f8d7b5-k2xq4", "bank", "10.0.0.7", {}, ("ReplicaSet", "waypoint-6c9f8d7b5"),
                      labels=WAYPOINT_LABELS), "node-a", "http-envoy-prom", 15090)
    assert pod_target(spec) == make_target("http://10.0.0.7:15090/stats/prometheus", "istio", "bank", "waypoint", "waypoint")


def test_ztunnel_counters_are_split_by_the_workload_its_reporter_names():
    """A destination-side DENY is the destination's, a source-side TLS failure the source's; series of no side are ignored."""
    tls = Sample(CLOSED, {"reporter": "source", "source_workload_namespace": "bank", "source_workload": "web",
                          "destination_workload_namespace": "bank", "destination_workload": "accounts",
                          "response_flags": "TLS_FAILURE"}, 3)
    plain = Sample("istio_tcp_connections_opened_total", {"reporter": "destination", "destination_workload_namespace": "bank",
                   "destination_workload": "postgres", "connection_security_policy": "unknown"}, 7)
    reading = normalize(ZTUNNEL, [deny("bank", "postgres", 2), deny("bank", "postgres", 1, reporter="source"),
                                  tls, plain, Sample(CLOSED, {"response_flags": "DENY"}, 9)])
    assert reading.counters == {}
    assert {who: {k: v for k, v in counters.items() if v} for who, counters in reading.by_workload.items()} == {
        ("bank", "postgres"): {(DENIED, ""): 2, (PLAINTEXT, ""): 7},
        ("bank", "web"): {(FAILURES, "other"): 3},
    }


@pytest.mark.parametrize("value", [-1.0, float("inf"), float("nan")])
def test_a_ztunnel_counter_value_that_is_no_counter_fails_the_scrape(value):
    """Negative and non-finite values are a bad payload, as for sidecars."""
    with pytest.raises(PayloadError):
        normalize(ZTUNNEL, [deny("bank", "postgres", value)])


def test_one_ztunnel_names_at_most_max_speakers_workloads_and_the_rest_is_counted_once():
    """Workloads beyond MAX_SPEAKERS from one ztunnel are not counted and are counted as refused once, not every scrape."""
    reading = normalize(ZTUNNEL, [deny("bank", f"w{i}", 1) for i in range(MAX_SPEAKERS + 5)])
    assert (len(reading.by_workload), reading.refused) == (MAX_SPEAKERS, 5)
    state = State()
    for _ in range(3):
        state.observe(NODE_B, reading, 0.01)
    assert state.refused_claims["too_many"] == 5


def test_claims_are_checked_against_the_captured_pods_of_the_ztunnels_node():
    """With a pod list, a claim counts only for a captured pod on the ztunnel's node, under that pod's workload."""
    watcher = PodWatcher(ApiServer("https://127.0.0.1:1", None, None), [])
    for spec in (captured(ambientdata.POSTGRES), captured(ambientdata.WEB)):
        watcher._take("", watcher._pods[""], "ADDED", spec)
    bare = placed(pod("batch-runner", "bank", "10.1.0.8", {"ambient.istio.io/redirection": "enabled"}), "node-b")
    watcher._take("", watcher._pods[""], "ADDED", bare)
    state = State()
    state.resolve = watcher.resolve
    reading = normalize(ZTUNNEL, [deny("bank", "postgres", 2), deny("bank", "web", 5), deny("bank", "batch-runner", 1),
                                  deny("bank", "Not_A_Name", 1)])
    state.observe(NODE_B, reading, 0.01)
    assert {key: w.totals[(DENIED, "")] for key, w in state.workloads.items() if (DENIED, "") in w.totals} == {
        ("istio", "bank", "postgres"): 2, ("istio", "bank", "pod/batch-runner"): 1}
    assert state.refused_claims == {"bad_name": 1, "not_on_node": 1, "too_many": 0}
    # web's pod moves to node-b: now it counts (its earlier refusal stays counted once)
    watcher._take("", watcher._pods[""], "MODIFIED", placed(captured(ambientdata.WEB), "node-b"))
    state.observe(NODE_B, normalize(ZTUNNEL, [deny("bank", "web", 6)]), 0.01)
    assert state.workloads[("istio", "bank", "web")].totals[(DENIED, "")] == 6


def test_a_pod_taking_another_workloads_telemetry_name_does_not_take_its_counts():
    """Two captured workloads on one node under one telemetry name (service.istio.io/workload-name): the one whose controller bears the name gets them."""
    watcher = PodWatcher(ApiServer("https://127.0.0.1:1", None, None), [])
    impostor = placed(pod("impostor", "bank", "10.1.0.8", {"ambient.istio.io/redirection": "enabled"},
                          labels={"service.istio.io/workload-name": "postgres"}), "node-b")
    for spec in (captured(ambientdata.POSTGRES), impostor):
        watcher._take("", watcher._pods[""], "ADDED", spec)
    assert watcher.resolve("node-b", "bank", "postgres") == "postgres"
    assert watcher.resolve("node-a", "bank", "postgres") is None


def test_a_ztunnel_restart_and_a_vanishing_series_never_count_twice():
    """Raw values are kept per ztunnel and workload: a lower value is a restart, a series that leaves and comes back adds only its growth."""
    state = State(max_workloads=3)
    for value in (5, 8):
        state.observe(NODE_B, normalize(ZTUNNEL, [deny("bank", "postgres", value)]), 0.01)
    state.observe(NODE_B, normalize(ZTUNNEL, [deny("bank", "web", 1)]), 0.01)  # postgres's series gone
    state.observe(NODE_B, normalize(ZTUNNEL, [deny("bank", "postgres", 10), deny("bank", "web", 2)]), 0.01)
    state.observe(NODE_B, normalize(ZTUNNEL, [deny("bank", "postgres", 1), deny("bank", "web", 2)]), 0.01)  # restart
    assert state.workloads[("istio", "bank", "postgres")].totals[(DENIED, "")] == 11
    # ztunnel's own workload and two claimed ones fill --max-workloads 3: a fourth is dropped
    state.observe(NODE_B, normalize(ZTUNNEL, [deny("bank", "accounts", 1)]), 0.01)
    assert ("istio", "bank", "accounts") not in state.workloads and state.dropped_workloads == 1
    assert state.retain({NODE_B}, 0.0) == {NODE_B}
    assert {key for key, _ in state.exported()} == {("istio", "istio-system", "ztunnel")}


def test_a_burst_of_l4_denials_at_a_ztunnel_is_the_destination_workloads_burst():
    """Denials a ztunnel reports for a workload start and end that workload's burst, with its labels, as a sidecar's would."""
    state = State(burst=BurstPolicy(absolute=1.0, factor=10.0, minimum=0.5, baseline_seconds=60.0))
    events = []
    for second, denied in enumerate((0, 0, 30, 60, 60, 60)):
        state.observe(NODE_B, normalize(ZTUNNEL, [deny("bank", "postgres", denied)]), 0.01)
        events += [(second, e.kind, e.record["namespace"], e.record["workload"]) for e in state.end_cycle(1000.0 + second)]
    assert events == [(2, "authz_burst_started", "bank", "postgres"), (4, "authz_burst_ended", "bank", "postgres")]


def test_a_busy_ztunnels_ordinary_connection_series_are_not_kept():
    """Only lines holding one of the rules' literals are kept: 25,000 source-side series of ordinary connections do not reach the 20,000-sample cap."""
    from meshobs.exporter import parse

    ordinary = "".join(
        f'{family}{{reporter="source",source_workload="w{i}",source_workload_namespace="bank",response_flags="-",'
        f'connection_security_policy="mutual_tls"}} {i}\n'
        for i in range(12_500) for family in (CLOSED, "istio_tcp_connections_opened_total"))
    denied = ('istio_tcp_connections_closed_total{reporter="destination",destination_workload="postgres",'
              'destination_workload_namespace="bank",response_flags="DENY",connection_security_policy="mutual_tls"} 4\n')
    lines = parse.line_filter(ZTUNNEL)
    lines.feed((ordinary + denied).encode())
    reading = normalize(ZTUNNEL, parse.parse_lines(lines.lines()))
    assert len(lines.lines()) <= 2  # the denial, and a chunk's first line, which the scan checks by its name only
    assert reading.by_workload[("bank", "postgres")][(DENIED, "")] == 4


_REPORTERS = st.sampled_from(["destination", "source", "waypoint", "", "x" * 300])
_NAMES_ = st.one_of(st.sampled_from(["postgres", "unknown", "", "pod/x", "a" * 300, "Bad_Name", "web"]), st.text(max_size=12))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.tuples(
    st.sampled_from([CLOSED, "istio_tcp_connections_opened_total", "istio_tcp_connections_failed_total"]), _REPORTERS,
    _NAMES_, _NAMES_, st.sampled_from(["DENY", "TLS_FAILURE", "IDENTITY_ERROR", "CERT_REVOKED", "-", "deny"]),
    st.sampled_from(["mutual_tls", "unknown", "none"]), st.sampled_from(["1", "0", "-1", "NaN", "+Inf", "1e400", "7"]),
), max_size=12))
def test_any_ztunnel_exposition_gives_counts_for_named_workloads_or_a_payload_error(lines):
    """Whatever a ztunnel's series claim, reading them gives finite counts under checked names, or a PayloadError; nothing else escapes."""
    from meshobs.exporter import parse

    body = "".join(
        f'{name}{{reporter="{reporter}",destination_workload="{who}",destination_workload_namespace="{ns}",'
        f'source_workload="{who}",source_workload_namespace="{ns}",response_flags="{flags}",'
        f'connection_security_policy="{policy}"}} {value}\n'
        for name, reporter, who, ns, flags, policy, value in lines
        if '"' not in who + ns and "\\" not in who + ns and "\n" not in who + ns)
    state = State()
    try:
        filtered = parse.line_filter(ZTUNNEL)
        filtered.feed(body.encode())
        state.observe(NODE_B, normalize(ZTUNNEL, parse.parse_lines(filtered.lines())), 0.01)
    except PayloadError:
        return
    for (mesh, namespace, workload), record in state.workloads.items():
        assert is_name(namespace) and is_name(workload) and "unknown" not in (namespace, workload)
        assert all(0 <= value < float("inf") for value in record.totals.values())
