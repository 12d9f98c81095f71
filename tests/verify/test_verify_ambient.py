"""`meshobs verify` on a mixed Istio mesh: the replayed sidecar mesh beside the ambient `bank` of
tests/support/ambientdata.py (ztunnels on two nodes, the `bank` waypoint, the `shop` sidecar also
calling into `bank`),
scraped by a real Prometheus as the rendered istio-ztunnels, istio-waypoints and istio-proxies
jobs label it, normalized by the real exporter, with the rendered rules loaded."""

from __future__ import annotations

import time

import pytest

from meshobs.verify import exceptions, sources
from meshobs.verify.check import Checker
from meshobs.verify.promapi import Prometheus
from meshobs.verify.variables import Timing
from tests.support import ambientdata
from tests.support.procs import process_starter
from tests.verify import stack
from tests.verify.replay import Replay
from tests.verify.test_verify_replayed import panel

AMBIENT_DASHBOARDS = ("dashboards/istio/ztunnel.json", "dashboards/istio/waypoint.json")


def _job(target) -> str:
    """The rendered job that scrapes this pod (deploy/prometheus/prometheus.yml), from the labels it adds."""
    if "node" in target.labels:
        return "istio-ztunnels"
    if "waypoint" in target.labels:
        return "istio-waypoints"
    return "istiod" if target.workload == "istiod" else "istio-proxies"


@pytest.fixture(scope="module")
def ambient_mesh(tmp_path_factory, request):
    """(rendered folder, outcomes of every Istio query) on the replayed mixed mesh, checked once for
    this module's tests; every process and replay server stops after them."""
    starter = process_starter()
    request.addfinalizer(lambda: next(starter, None))
    yield from _checked(next(starter), tmp_path_factory.mktemp("ambient"), request)


def _checked(processes, tmp_path, request):
    replay = Replay.start(request, ambientdata.mixed(time.time()))
    jobs: dict[str, list[dict]] = {}
    for target, address in replay.addresses():
        jobs.setdefault(_job(target), []).append(stack.static_config(address, __metrics_path__=target.path, **target.labels))
    entries = [{"address": address, "mesh": "istio", "namespace": t.labels["namespace"], "workload": t.workload,
                "path": t.path} for t, address in replay.addresses() if t.proxy]
    out, prometheus = stack.start(processes, tmp_path, "istio", jobs, entries)
    checker = Checker(Prometheus(prometheus.url), Timing(scrape=1, step=1, range=120))
    yield out, [checker.check(q) for q in sources.load(out, ["istio"])]


# Rates over `$__rate_interval` (4 s here) swing with scrape timing: values are compared as > 0,
# shares (ratios of the same window's rates) exactly.
def _values(outcome, *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(s["metric"].get(label, "") for label in labels): float(s["value"][1]) for s in outcome.result}


def test_every_istio_query_answers_on_the_ambient_mesh(ambient_mesh):
    """Every panel query of every Istio dashboard and every rule returns data on the ambient mesh, and no query of the ztunnel and waypoint dashboards is excused as empty."""
    _, outcomes = ambient_mesh
    failed = {o.query.where: o.problems for o in outcomes if not o.ok}
    assert failed == {}
    excused = [(o.query.where, o.excused) for o in outcomes if o.excused and o.query.source in AMBIENT_DASHBOARDS]
    assert excused == []
    assert {o.query.source for o in outcomes} >= set(AMBIENT_DASHBOARDS)


def test_ztunnel_dashboard_shows_each_node_its_failures_and_plaintext(ambient_mesh):
    """Both nodes' ztunnels are up; the L4 denial, the TLS failure and the plaintext client show at the destination's ztunnel with their workloads."""
    _, outcomes = ambient_mesh
    board = "ztunnel.json"
    assert _values(panel(outcomes, board, "ztunnel up by node"), "node") == {("node-a",): 1.0, ("node-b",): 1.0}
    failed = _values(panel(outcomes, board, "Failed connections by source and destination"), "response_flags",
                     "source_namespace", "source_workload", "destination_namespace", "destination_workload")
    assert set(failed) == {("DENY", "other", "intruder", "bank", "postgres"), ("TLS_FAILURE", "bank", "web", "bank", "accounts")}
    assert all(value > 0 for value in failed.values())
    denied = _values(panel(outcomes, board, "L4 authorization denials by destination"), "destination_namespace", "destination_workload")
    assert list(denied) == [("bank", "postgres")] and denied[("bank", "postgres")] > 0
    plaintext = _values(panel(outcomes, board, "Plaintext connections by source and destination"), "source_workload", "destination_workload")
    assert list(plaintext) == [("unknown", "postgres")]
    # node-b's pods take every inbound connection of the layout (the waypoint is not captured): 0.3 of 4.0 plaintext
    share = _values(panel(outcomes, board, "Inbound mTLS share by node"), "node")
    assert list(share) == [("node-b",)] and share[("node-b",)] == pytest.approx(1 - 0.3 / 4.0, abs=0.02)
    assert _values(panel(outcomes, board, "Identity and TLS failures by node"), "node", "response_flags").keys() == {
        ("node-b", "TLS_FAILURE")}


def test_waypoint_dashboard_counts_requests_and_rbac_denials_by_service(ambient_mesh):
    """The bank waypoint's requests to accounts, its failure share (5xx and gRPC), the 403 pair per destination service and its RBAC denials per port."""
    _, outcomes = ambient_mesh
    board = "waypoint.json"
    requests = _values(panel(outcomes, board, "Requests by destination service"), "waypoint", "destination_namespace",
                       "destination_service")
    assert requests.keys() == {("waypoint", "bank", "accounts")}
    assert requests[("waypoint", "bank", "accounts")] > 0
    # the 503s and the failed gRPC call
    ratio = _values(panel(outcomes, board, "Failure ratio by destination service"), "destination_service")
    assert ratio[("accounts",)] == pytest.approx((0.8 + 0.2) / 13.0, rel=0.1)
    rbac = _values(panel(outcomes, board, "RBAC denials by waypoint and port"), "waypoint", "port")
    assert rbac.keys() == {("waypoint", "80")} and rbac[("waypoint", "80")] > 0
    pairs = _values(panel(outcomes, board, "Denied pairs"), "source_namespace", "source_workload", "destination_service")
    assert list(pairs) == [("other", "intruder", "accounts")]


def test_ambient_workloads_show_beside_sidecars_on_the_existing_dashboards(ambient_mesh):
    """On the overview, service, workload and security dashboards the ambient bank sits beside the sidecar namespaces: accounts' requests counted once (the waypoint's, not again from the shop sidecar that calls it), its callers by workload, postgres's L4 denial, plaintext and TCP."""
    _, outcomes = ambient_mesh
    workload = ("destination_namespace", "destination_workload")
    inbound = _values(panel(outcomes, "workload.json", "Inbound requests"), *workload)
    through_waypoint = _values(panel(outcomes, "waypoint.json", "Requests by destination service"), "destination_namespace",
                               "destination_service")
    assert inbound[("bank", "accounts")] == pytest.approx(through_waypoint[("bank", "accounts")], rel=1e-6)
    assert inbound[("shop", "productpage")] > 0  # the sidecar namespace as before
    callers = _values(panel(outcomes, "service.json", "Requests by source workload"), "source_namespace", "source_workload",
                      "destination_namespace", "destination_service")
    assert {caller[:2] for caller in callers if caller[2:] == ("bank", "accounts")} == {
        ("bank", "web"), ("shop", "frontend"), ("other", "intruder")}
    denied = _values(panel(outcomes, "security.json", "Authorization denials by destination"), *workload)
    assert denied[("bank", "postgres")] > 0 and denied[("payments", "ledger")] > 0  # L4 (ztunnel DENY) and sidecar RBAC
    plaintext = _values(panel(outcomes, "security.json", "Plaintext traffic by destination"), *workload)
    assert plaintext[("bank", "postgres")] > 0 and plaintext[("shop", "productpage")] > 0  # ztunnel `unknown`, sidecar `none`
    assert ("bank", "postgres") in _values(panel(outcomes, "overview.json", "TCP workloads"), *workload)


def test_a_ztunnel_selector_is_excused_only_while_no_ztunnel_is_scraped():
    """An empty ztunnel or waypoint selector is a declared exception while Prometheus scrapes no ztunnel (waypoint), and a failure once it scrapes one."""
    query = sources.Query("istio", "panel", "dashboards/istio/ztunnel.json", "Istio / ztunnel", "ztunnels up", "")
    ztunnel_selector = 'up{namespace="istio-system", pod=~"ztunnel-.+", cluster=~".*"}'
    waypoint_selector = 'envoy_server_live{waypoint!="", cluster=~".*"}'
    for selector in (ztunnel_selector, waypoint_selector):
        assert exceptions.excuse(query, selector, present=lambda s: False) is not None
        assert exceptions.excuse(query, selector, present=lambda s: True) is None
    assert exceptions.excuse(query, ztunnel_selector, present=lambda s: "waypoint" in s).startswith(
        "exists only where pods run in ambient mode")
