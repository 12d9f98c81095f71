"""Counters stay monotonic across proxy restarts and churn; bursts and cert windows are detected once."""

from __future__ import annotations

from meshobs.exporter.normalize import DENIED, FAILURES, HANDSHAKES, Reading
import dataclasses

from meshobs.exporter.state import BurstPolicy, CertPolicy, State
from meshobs.exporter.targets import make_target

POD_A = make_target("http://10.0.0.1:19000/stats/prometheus", "consul", "shop", "cart")
POD_B = make_target("http://10.0.0.2:19000/stats/prometheus", "consul", "shop", "cart")
KEY = POD_A.workload_key


ISTIO_POD = make_target("http://10.0.0.3:15090/stats/prometheus", "istio", "shop", "cart")
HOUR = 3600.0


def reading(handshakes: float = 0, denied: float = 0, untrusted: float = 0, certs: dict | None = None,
            not_before: dict | None = None) -> Reading:
    return Reading({(HANDSHAKES, ""): handshakes, (DENIED, ""): denied, (FAILURES, "untrusted_cert"): untrusted},
                   certs or {}, not_before or {})


def burst_policy(**changes: float) -> BurstPolicy:
    return dataclasses.replace(BurstPolicy.from_config(), **changes)


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
    state = State(burst_policy(absolute=1.0))
    kinds = []
    for second, denied in enumerate((0, 0, 5, 10, 10.4, 10.4)):
        state.observe(POD_A, reading(denied=denied), 0.01)
        kinds += [e.kind for e in state.end_cycle(now=float(second))]
    assert kinds == ["authz_burst_started", "authz_burst_ended"]
    assert state.workloads[KEY].bursts == 1 and not state.workloads[KEY].burst


def test_burst_relative_to_a_baseline():
    """A rate far above the workload's own baseline starts a burst even under the absolute threshold."""
    state = State(burst_policy(absolute=100.0, factor=5.0, minimum=0.05, baseline_seconds=10.0))
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


def test_new_failure_reasons_give_one_event():
    """A failure reason seen after the first look at a workload gives one event, the first look none."""
    state = State()
    state.observe(POD_A, reading(), 0.01)
    assert state.end_cycle(now=0.0) == []
    state.observe(POD_A, reading(untrusted=2), 0.01)
    [reason] = state.end_cycle(now=1.0)
    assert (reason.kind, reason.record) == ("tls_failure_new_reason", {
        "mesh": "consul", "namespace": "shop", "workload": "cart", "reason": "untrusted_cert", "failures": 2})
    assert state.end_cycle(now=2.0) == []


def cert_events(state: State, target, certs: dict, not_before: dict, hours_left: list[float]) -> list[tuple[float, dict]]:
    """(hours left, record) of each cert event while the clock runs to each of `hours_left` before the leaf's expiry."""
    state.observe(target, reading(certs=certs, not_before=not_before), 0.01)
    out = []
    for left in hours_left:
        out += [(left, event.record) for event in state.end_cycle(now=certs["leaf"] - left * HOUR)]
    return out


def test_a_ca_certificate_event_fires_once_on_entering_the_window():
    """A CA certificate gives one event when it enters the configured window (the alert's warning), none before or after."""
    state = State(certs=CertPolicy(ca_window=2 * HOUR, leaf_fraction=0.25))
    state.observe(POD_A, reading(certs={"ca": 100 * HOUR}), 0.01)
    assert state.end_cycle(now=97 * HOUR) == []
    [event] = state.end_cycle(now=98.5 * HOUR)
    assert (event.kind, event.record) == ("cert_expiring", {
        "mesh": "consul", "namespace": "shop", "workload": "cart", "cert": "ca", "expires_at": 360000,
        "seconds_left": 5400})
    assert state.end_cycle(now=99 * HOUR) == []


def test_a_leaf_at_its_normal_age_gives_no_event_and_a_failed_rotation_one():
    """A 24h leaf (lifetime from its notBefore) is news only with less than the fraction of its lifetime left: never at 12h or 7h left, once under 6h."""
    state = State(certs=CertPolicy(ca_window=7 * 24 * HOUR, leaf_fraction=0.25))
    expiry = 1000 * HOUR
    events = cert_events(state, POD_A, {"leaf": expiry}, {"leaf": expiry - 24 * HOUR}, [23, 12, 7, 6.01, 5.99, 3, 1])
    assert [(left, record["seconds_left"], record["not_before"]) for left, record in events] == [
        (5.99, int(5.99 * HOUR), int(expiry - 24 * HOUR))]


def test_without_a_not_before_the_leaf_lifetime_is_the_meshs_default():
    """With only the expiry known, a Consul leaf is judged against 72h and an Istio leaf against 24h (fraction 0.25: 18h and 6h)."""
    policy = CertPolicy(ca_window=7 * 24 * HOUR, leaf_fraction=0.25)
    consul = cert_events(State(certs=policy), POD_A, {"leaf": 1000 * HOUR}, {}, [70, 36, 18.5, 17.5, 2])
    istio = cert_events(State(certs=policy), ISTIO_POD, {"leaf": 1000 * HOUR}, {}, [23, 17.5, 7, 5.5, 2])
    assert [(left, "not_before" in record) for left, record in consul] == [(17.5, False)]
    assert [left for left, _ in istio] == [5.5]


def test_default_policy_is_the_configurations():
    """Without arguments the state judges by meshobs.yaml's defaults: a 24h leaf with 12h left is quiet, a CA within 7 days is news."""
    state = State()
    assert state.cert_policy == CertPolicy(ca_window=7 * 24 * HOUR, leaf_fraction=0.1)
    assert state.burst_policy == BurstPolicy(absolute=1.0, factor=5.0, minimum=0.05, baseline_seconds=HOUR)
    assert cert_events(state, ISTIO_POD, {"leaf": 1000 * HOUR, "ca": 1006 * HOUR}, {}, [12]) == [(12, {
        "mesh": "istio", "namespace": "shop", "workload": "cart", "cert": "ca", "expires_at": int(1006 * HOUR),
        "seconds_left": int(18 * HOUR)})]


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
