"""Counters stay monotonic across proxy restarts and churn; bursts and cert windows are detected once."""

from __future__ import annotations

from meshobs.exporter.normalize import DENIED, FAILURES, HANDSHAKES, Reading
from meshobs.exporter.state import BurstPolicy, State
from meshobs.exporter.targets import make_target

POD_A = make_target("http://10.0.0.1:19000/stats/prometheus", "consul", "shop", "cart")
POD_B = make_target("http://10.0.0.2:19000/stats/prometheus", "consul", "shop", "cart")
KEY = POD_A.workload_key


def reading(handshakes: float = 0, denied: float = 0, untrusted: float = 0, certs: dict | None = None) -> Reading:
    return Reading({(HANDSHAKES, ""): handshakes, (DENIED, ""): denied, (FAILURES, "untrusted_cert"): untrusted},
                   certs or {})


def test_a_proxy_restart_continues_the_count():
    """A raw value below the last one is a restart: the new raw value is added, never subtracted."""
    state = State()
    for value in (5, 9, 2, 6):  # restart between 9 and 2
        state.observe(POD_A, reading(handshakes=value), 0.01)
    assert state.workloads[KEY].totals[(HANDSHAKES, "")] == 15  # 5 + 4, restart, 2 + 4


def test_pods_of_a_workload_add_up_and_a_gone_pod_keeps_its_counts():
    """Two pods sum into one workload; after one is gone its counts stay and its target state is dropped."""
    state = State()
    state.observe(POD_A, reading(handshakes=4), 0.01)
    state.observe(POD_B, reading(handshakes=6), 0.01)
    state.retain({POD_A}, now=100.0)
    state.observe(POD_A, reading(handshakes=5), 0.01)
    assert state.workloads[KEY].totals[(HANDSHAKES, "")] == 11
    assert set(state.targets) == {POD_A}


def test_a_workload_without_targets_is_forgotten_after_the_grace_period():
    """Per-workload state is bounded: orphaned workloads go after `grace` seconds."""
    state = State(grace=60)
    state.observe(POD_A, reading(handshakes=1), 0.01)
    state.retain(set(), now=0.0)
    state.retain(set(), now=59.0)
    assert KEY in state.workloads
    state.retain(set(), now=61.0)
    assert state.workloads == {}


def test_burst_from_zero_starts_and_ends_once():
    """Denials at the absolute rate start one burst; it ends when the rate drops below half of it."""
    state = State(BurstPolicy(absolute=1.0))
    kinds = []
    for second, denied in enumerate((0, 0, 5, 10, 10.4, 10.4)):
        state.observe(POD_A, reading(denied=denied), 0.01)
        kinds += [e.kind for e in state.end_cycle(now=float(second))]
    assert kinds == ["authz_burst_started", "authz_burst_ended"]
    assert state.workloads[KEY].bursts == 1 and not state.workloads[KEY].burst


def test_burst_relative_to_a_baseline():
    """A rate far above the workload's own baseline starts a burst even under the absolute threshold."""
    state = State(BurstPolicy(absolute=100.0, factor=5.0, minimum=0.05, baseline_seconds=10.0))
    denied, events = 0.0, []
    for second in range(20):
        denied += 0.1  # baseline 0.1/s
        state.observe(POD_A, reading(denied=denied), 0.01)
        events += state.end_cycle(now=float(second))
    assert events == []
    denied += 2.0
    state.observe(POD_A, reading(denied=denied), 0.01)
    [event] = state.end_cycle(now=20.0)
    assert event.kind == "authz_burst_started" and event.record["denied_per_second"] == 2.0


def test_new_failure_reasons_and_cert_window_events_fire_once():
    """A reason seen after the first look and a certificate entering the window each give one event."""
    state = State(cert_window=3600)
    state.observe(POD_A, reading(certs={"leaf": 10_000.0}), 0.01)
    assert state.end_cycle(now=0.0) == []
    state.observe(POD_A, reading(untrusted=2, certs={"leaf": 10_000.0}), 0.01)
    [reason] = state.end_cycle(now=1.0)
    assert (reason.kind, reason.record) == ("tls_failure_new_reason", {
        "mesh": "consul", "namespace": "shop", "workload": "cart", "reason": "untrusted_cert", "failures": 2})
    [cert] = state.end_cycle(now=7000.0)
    assert (cert.kind, cert.record["cert"], cert.record["expires_at"], cert.record["seconds_left"]) == (
        "cert_expiring", "leaf", 10000, 3000)
    assert state.end_cycle(now=7001.0) == []


def test_a_workload_whose_pods_are_gone_stops_being_exported_at_once_and_resumes_its_count():
    """Without live targets a workload leaves the exported set in the same cycle; back within the grace, its totals carry on."""
    state = State(grace=60)
    state.observe(POD_A, reading(handshakes=4), 0.01)
    assert [key for key, _ in state.exported()] == [KEY]
    assert state.retain(set(), now=0.0) == set()
    assert state.exported() == []
    assert state.retain({POD_B}, now=30.0) == {POD_B}
    state.observe(POD_B, reading(handshakes=3), 0.01)
    assert [(key, w.totals[(HANDSHAKES, "")]) for key, w in state.exported()] == [(KEY, 7)]


def test_workloads_beyond_the_cap_are_not_scraped_and_are_counted_and_orphans_make_room():
    """With max_workloads=2 a third workload's targets are left out and counted each cycle; a gone workload's place is taken at once."""
    state = State(max_workloads=2)
    pods = [make_target(f"http://10.0.0.{i}:19000/stats/prometheus", "consul", "shop", f"w{i}") for i in range(3)]
    assert state.retain(set(pods), now=0.0) == set(pods[:2])
    for target in pods[:2]:
        state.observe(target, reading(handshakes=1), 0.01)
    assert state.retain(set(pods), now=1.0) == set(pods[:2])
    assert state.dropped_workloads == 2
    assert state.retain({pods[1], pods[2]}, now=2.0) == {pods[1], pods[2]}
    state.observe(pods[2], reading(handshakes=1), 0.01)
    assert [key[2] for key, _ in state.exported()] == ["w1", "w2"] and len(state.workloads) == 2
    assert state.dropped_workloads == 2


def test_resets_are_per_target_never_across_the_pods_of_a_workload():
    """Two pods of one workload at different raw values are each tracked on their own: neither looks like a reset of the other."""
    state = State()
    for a, b in ((100, 5), (110, 6), (120, 7)):
        state.observe(POD_A, reading(handshakes=a), 0.01)
        state.observe(POD_B, reading(handshakes=b), 0.01)
    assert state.workloads[KEY].totals[(HANDSHAKES, "")] == 127
