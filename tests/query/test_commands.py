"""`meshobs stat`, `authz`, `tls` and `certs` against a real Prometheus holding each mesh's verify
data set with the rendered rules: the numbers they print equal PromQL written by hand on the
raw series of the same data, evaluated at the time the recorded series they read were computed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import yaml

from meshobs.query.command import CLEAR
from tests.query.conftest import MeshStack, meshobs, start_mesh

APPROX = dict(rel=1e-4, abs=1e-6)  # the commands round to 6 decimals


@dataclass(frozen=True)
class Facts:
    """Where the hand-written PromQL finds one workload's numbers in a mesh's raw series."""

    namespace: str
    workload: str  # also its service
    requests: str  # raw selector of the requests the workload received
    errors: str  # ... of those answered 5xx
    buckets: str  # latency histogram buckets (milliseconds) at the workload's proxy
    denied_namespace: str  # a workload whose authorization policy denies a caller
    denied_workload: str
    denied_source: tuple[str, str]  # (namespace, workload) of that caller
    plaintext_workload: str  # a workload reached in plaintext
    tcp_workload: str  # a workload accepting TCP connections, and the raw counter of them
    tcp_connections: str


FACTS = {
    "istio": Facts(
        "shop", "reviews",
        'istio_requests_total{reporter="destination", destination_workload_namespace="shop", destination_workload="reviews"}',
        'istio_requests_total{reporter="destination", destination_workload_namespace="shop", destination_workload="reviews", response_code=~"5.."}',
        'istio_request_duration_milliseconds_bucket{reporter="destination", destination_workload_namespace="shop", destination_workload="reviews"}',
        "payments", "ledger", ("other", "intruder"), "productpage",
        "mongodb", 'istio_tcp_connections_opened_total{reporter="destination", destination_workload="mongodb"}'),
    "linkerd": Facts(
        "emojivoto", "voting",
        'response_total{direction="inbound", namespace="emojivoto", deployment="voting"}',
        'response_total{direction="inbound", namespace="emojivoto", deployment="voting", status_code=~"5.."}',
        'response_latency_ms_bucket{direction="inbound", namespace="emojivoto", deployment="voting"}',
        "booksapp", "books", ("attacker", "scanner"), "emoji",
        "voting", 'tcp_open_total{direction="inbound", namespace="emojivoto", deployment="voting"}'),
    "consul": Facts(
        "default", "backend",
        'envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix="public_listener", local_cluster="backend"}',
        'envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix="public_listener", local_cluster="backend", envoy_response_code_class="5"}',
        'envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="public_listener", local_cluster="backend"}',
        "default", "backend", ("default", "intruder"), "backend",
        "db", 'envoy_tcp_downstream_cx_total{envoy_tcp_prefix="public_listener", local_cluster="db"}'),
}


# What the callers of a service counted (its requests are the larger of theirs and its own; Linkerd's
# are its callers' only).
CALLERS = {
    "istio": 'istio_requests_total{{reporter="source", destination_service_namespace="{ns}", destination_service_name="{svc}"}}',
    "linkerd": 'response_total{{direction="outbound", dst_namespace="{ns}", dst_service="{svc}"}}',
    "consul": 'envoy_cluster_upstream_rq_xx{{local_cluster!="", consul_destination_namespace="{ns}", '
              'consul_destination_service="{svc}"}}',
}


@pytest.fixture(scope="module", params=sorted(FACTS))
def stack(request, module_processes, tmp_path_factory) -> MeshStack:
    return start_mesh(request.param, module_processes, tmp_path_factory.mktemp(request.param), request)


def hand(stack: MeshStack, recorded: str, expr: str) -> float:
    """`expr` on the raw series at the time Prometheus last computed `recorded` (before the stack's time)."""
    evaluated = stack.value(f"max(timestamp({recorded}))")
    result = stack.prometheus.query(expr, evaluated)
    return float(result[0]["value"][1]) if result else 0.0


def agree(stack: MeshStack, compare) -> None:
    """`compare(stack)` -> [(what, printed, expected)] agree; a scrape ingested between a rule's
    evaluation and the hand query shifts one sample, so a disagreement is retried at a later time."""
    for _ in range(3):
        pairs = [(what, printed, None if expected != expected else pytest.approx(expected, **APPROX))
                 for what, printed, expected in compare(stack)]  # NaN (no data): printed as no value
        if all(printed == expected for _, printed, expected in pairs):
            return
        stack.prometheus.wait_for_rules_after(stack.at, timeout=10)
        stack.at = time.time()
    assert [(what, printed) for what, printed, _ in pairs] == [(what, expected) for what, _, expected in pairs]


def as_json(stack: MeshStack, command: str, *argv: str) -> dict:
    printed = stack.run(command, "-o", "json", *argv)
    assert printed.code == 0, printed.err
    return json.loads(printed.out)


def row(rows: list[dict], **match: str) -> dict:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, rows)
    return found[0]


def recorded(name: str, mesh: str, **labels: str) -> str:
    matchers = ", ".join([f'mesh="{mesh}"'] + [f'{k}="{v}"' for k, v in labels.items()])
    return f"{name}{{{matchers}}}"


def test_stat_per_workload_equals_promql_on_the_raw_series(stack):
    """`meshobs stat` prints a workload's RPS, success rate, p99 and new TCP connections as PromQL on the proxy's own series gives them."""
    f = FACTS[stack.mesh]
    where = dict(destination_namespace=f.namespace, destination_workload=f.workload)

    def compare(stack):
        got = row(as_json(stack, "stat")["workloads"], namespace=f.namespace, workload=f.workload)
        requests = hand(stack, recorded("destination_workload:mesh_requests:rate5m", stack.mesh, **where),
                        f"sum(rate({f.requests}[5m]))")
        errors = hand(stack, recorded("destination_workload:mesh_request_errors:rate5m", stack.mesh, **where),
                      f"sum(rate({f.errors}[5m]))")
        p99 = hand(stack, recorded("destination_workload:mesh_request_duration_seconds:histogram_quantile_rate5m",
                                   stack.mesh, quantile="0.99", **where),
                   f"histogram_quantile(0.99, sum by (le) (rate({f.buckets}[5m]))) / 1000")
        tcp_row = row(as_json(stack, "stat")["workloads"], workload=f.tcp_workload)
        tcp = hand(stack, recorded("destination_workload:mesh_tcp_connections:rate5m", stack.mesh,
                                   destination_workload=f.tcp_workload), f"sum(rate({f.tcp_connections}[5m]))")
        return [("rps", got["requests_per_second"], requests), ("success", got["success_rate"], 1 - errors / requests),
                ("p99", got["latency_seconds"]["p99"], p99), ("tcp", tcp_row["tcp_connections_per_second"], tcp)]

    agree(stack, compare)
    document = as_json(stack, "stat")
    assert (document["schema"], document["kind"], document["window"]) == ("meshobs.query/v1", "stat", "5m")
    if stack.mesh != "consul":  # the replayed data sets have failures at this workload; Consul's has none
        assert row(document["workloads"], workload=f.workload)["success_rate"] < 1


def test_stat_per_service_equals_promql_on_the_raw_series(stack):
    """`meshobs stat svc/NAME` prints the service's RPS (the larger of its own and its callers' counts) and p50 as PromQL on the raw series gives them."""
    f = FACTS[stack.mesh]
    where = dict(destination_namespace=f.namespace, destination_service=f.workload)

    def compare(stack):
        got = as_json(stack, "stat", f"svc/{f.workload}")["services"]
        assert [(r["namespace"], r["service"]) for r in got] == [(f.namespace, f.workload)]
        # a service's requests are the larger of what it and what its callers counted (Linkerd: its callers')
        service = recorded("destination_service:mesh_requests:rate5m", stack.mesh, **where)
        callers = hand(stack, service, f"sum(rate({CALLERS[stack.mesh].format(ns=f.namespace, svc=f.workload)}[5m]))")
        own = hand(stack, service, f"sum(rate({f.requests}[5m]))") if stack.mesh != "linkerd" else 0.0
        requests = max(own, callers)
        # Linkerd's service latency is what its callers measure (outbound), the others' the destination's
        buckets = (f.buckets if stack.mesh != "linkerd" else
                   f'response_latency_ms_bucket{{direction="outbound", dst_namespace="{f.namespace}", dst_service="{f.workload}"}}')
        p50 = hand(stack, recorded("destination_service:mesh_request_duration_seconds:histogram_quantile_rate5m",
                                   stack.mesh, quantile="0.5", **where),
                   f"histogram_quantile(0.5, sum by (le) (rate({buckets}[5m]))) / 1000")
        return [("rps", got[0]["requests_per_second"], requests), ("p50", got[0]["latency_seconds"]["p50"], p50)]

    agree(stack, compare)


def test_authz_names_the_denied_workload_and_its_caller(stack):
    """`meshobs authz` shows the denials at the destination and the denied caller; `--fail-if denied` exits 1."""
    f = FACTS[stack.mesh]
    document = as_json(stack, "authz")
    denied = row(document["workloads"], namespace=f.denied_namespace, workload=f.denied_workload)
    assert denied["denied_per_second"] > 0
    # no dry-run policy in these data sets; Linkerd's audit mode reports would-deny only
    assert denied["dry_run_denied_per_second"] == 0.0
    assert denied["dry_run_allowed_per_second"] == (None if stack.mesh == "linkerd" else 0.0)
    source = row(document["denied_sources"], namespace=f.denied_namespace, workload=f.denied_workload)
    assert (source["source_namespace"], source["source_workload"]) == f.denied_source
    assert source["denied_per_second"] > 0
    # only Istio labels the caller's identity
    assert source["source_principal"] == ("spiffe://cluster.local/ns/other/sa/intruder" if stack.mesh == "istio" else None)

    failing = stack.run("authz", "--fail-if", "denied")
    assert failing.code == 1
    assert (f"meshobs authz: --fail-if denied holds: {f.denied_namespace}/{f.denied_workload} ({stack.mesh})"
            in failing.err)
    assert "Denied sources" in failing.out


def test_tls_lists_what_strict_would_break(stack):
    """`meshobs tls` marks the workload reached in plaintext as unsafe for STRICT, with its source where the mesh names it; plaintext a listener refused is a TLS failure, not a reason against STRICT."""
    f = FACTS[stack.mesh]
    document = as_json(stack, "tls")
    if stack.mesh == "consul":  # the data's plaintext attempts hit an mTLS-only listener: refused
        backend = row(document["workloads"], workload="backend")
        assert backend["strict_safe"] and backend["tls_failures_per_second"]["not_tls"] > 0
        assert {(e["mtls_share"], e["plaintext_per_second"]) for e in document["edges"]} == {(None, None)}  # callers label neither
        assert stack.run("tls", "--fail-if", "plaintext").code == 0
        failing = stack.run("tls", "--fail-if", "tls-failures")
        assert (failing.code, failing.err) == (1, "meshobs tls: --fail-if tls-failures holds: default/backend (consul)\n")
        return
    plain = row(document["workloads"], workload=f.plaintext_workload)
    assert plain["plaintext_per_second"] > 0 and plain["strict_safe"] is False
    assert document["strict_safe"] is False
    if stack.mesh == "istio":  # only Istio labels plaintext requests with their source
        # the unmeshed caller has no identity: Istio labels it "unknown"
        assert [(s["namespace"], s["workload"]) for s in plain["plaintext_sources"]] == [("unknown", "unknown")]
        assert plain["plaintext_sources"][0]["requests_per_second"] > 0
        assert plain["verdict"] == "would break callers outside the mesh"
    else:
        assert plain["plaintext_sources"] is None
        assert plain["verdict"] == "would break plaintext callers (sources unknown)"
    safe = [r for r in document["workloads"] if r["plaintext_per_second"] == 0]
    assert safe and all(r["strict_safe"] for r in safe)
    assert {r["verdict"] for r in safe if r["requests_per_second"] > 0} <= {"safe to enforce STRICT"}
    assert {r["verdict"] for r in safe if r["requests_per_second"] == 0} <= {"safe to enforce STRICT (no traffic in the window)"}

    edges = {(e["source_workload"], e["workload"]): e for e in document["edges"]}
    if stack.mesh == "istio":  # per edge: the unmeshed caller is all plaintext, the meshed one all mTLS
        assert (edges[("unknown", "productpage")]["mtls_share"], edges[("frontend", "productpage")]["mtls_share"]) == (0, 1)
        assert edges[("unknown", "productpage")]["plaintext_per_second"] > 0
    else:  # Linkerd's callers' proxies say they used mTLS; they do not see plaintext
        assert (edges[("web", "voting")]["mtls_share"], edges[("web", "voting")]["plaintext_per_second"]) == (1, None)
    assert "Edges (source workload -> destination workload):" in stack.run("tls", "--edges").out
    assert "Edges" not in stack.run("tls").out

    failing = stack.run("tls", "--fail-if", "plaintext")
    assert failing.code == 1
    assert f"{f.plaintext_workload} ({stack.mesh})" in failing.err
    assert "STRICT mTLS would break" in failing.out
    passing = stack.run("tls", "-n", f.denied_namespace, "--fail-if", "plaintext")  # a namespace without plaintext
    assert (passing.code, passing.err) == (0, "")
    assert "STRICT mTLS is safe to enforce for every workload shown" in passing.out


def test_certs_lists_the_soonest_expiry_first(stack):
    """`meshobs certs` starts with the certificate expiring first, its time left as the exporter's timestamp says."""
    document = as_json(stack, "certs", "--limit", "0")
    certs = document["certificates"]
    assert certs and [c["seconds_left"] for c in certs] == sorted(c["seconds_left"] for c in certs)
    first = certs[0]
    assert first["cert"] == "leaf"
    expiry = stack.value(f'min(meshobs_cert_expiry_timestamp_seconds{{mesh="{stack.mesh}", namespace="{first["namespace"]}", '
                         f'workload="{first["workload"]}", cert="leaf"}})')
    assert first["seconds_left"] == pytest.approx(expiry - stack.at, abs=0.01)
    assert stack.run("certs", "--fail-if", "expires-within=400d").code == 1
    assert stack.run("certs", "--fail-if", "expires-within=1m").code == 0


def test_longer_windows_average_the_recorded_rate(stack):
    """`--window 1h` averages the recorded 5m rate over the hour's evaluations; a window shorter than every recorded one uses the shortest."""
    f = FACTS[stack.mesh]
    series = recorded("destination_workload:mesh_requests:rate5m", stack.mesh,
                      destination_namespace=f.namespace, destination_workload=f.workload)
    hour = as_json(stack, "stat", "--window", "1h")
    assert hour["window"] == "1h"
    assert row(hour["workloads"], workload=f.workload)["requests_per_second"] == pytest.approx(
        stack.value(f"sum_over_time({series}[1h]) / 3600"), **APPROX)  # the stack evaluates rules every second
    short = subprocess.run(  # a real process: its logging goes to its own stderr
        [sys.executable, "-m", "meshobs", "stat", "--prometheus", stack.prometheus.url, "--mesh", stack.mesh,
         "--at", f"{stack.at:.3f}", "-o", "json", "--window", "1m"], capture_output=True, text=True, timeout=60)
    assert json.loads(short.stdout)["window"] == "5m"
    assert short.stderr == ("meshobs stat: warning: --window 1m is shorter than any window Prometheus records: "
                            "the numbers cover 5m\n")


def test_edges_to_a_service_list_its_callers(stack):
    """`meshobs stat --to SERVICE` lists the workloads calling it with their request rates."""
    f = FACTS[stack.mesh]
    edges = as_json(stack, "stat", "--to", f"{f.denied_namespace}/{f.denied_workload}")["edges"]
    callers = {(e["source_namespace"], e["source_workload"]) for e in edges}
    assert f.denied_source in callers
    assert all(e["destination_service"] == f.denied_workload and e["requests_per_second"] > 0 for e in edges)


def test_every_output_format_prints_the_same_numbers(stack):
    """Table, wide, JSON and YAML of one frame print the same rows; wide adds the cluster."""
    f = FACTS[stack.mesh]
    document = as_json(stack, "stat")
    assert yaml.safe_load(stack.run("stat", "-o", "yaml").out) == document
    got = row(document["workloads"], workload=f.workload)
    table = stack.run("stat").out.splitlines()
    assert table[0].split() == ["NAMESPACE", "WORKLOAD", "MESH", "SUCCESS", "RPS", "P50", "P95", "P99", "TCP", "CONN",
                                "MTLS", "DENIED"]
    line = next(l.split() for l in table if l.split()[:2] == [f.namespace, f.workload])
    assert line[3] == f"{got['success_rate'] * 100:.2f}%"
    assert line[4] == (f"{got['requests_per_second']:.2f}/s" if got["requests_per_second"] >= 0.01
                       else f"{got['requests_per_second']:.2g}/s")
    wide = stack.run("stat", "-o", "wide").out.splitlines()
    assert wide[0].split()[:2] == ["CLUSTER", "NAMESPACE"] and wide[0].split()[-1] == "PLAINTEXT"
    assert any(l.split()[:3] == ["c1", f.namespace, f.workload] for l in wide)


def test_watch_redraws_each_frame_in_place(stack):
    """`--watch` clears the screen before each table frame; with `-o json` each frame is one JSON line."""
    printed = meshobs("tls", "--prometheus", stack.prometheus.url, "--mesh", stack.mesh,
                      "--watch", "--watch-count", "2", "--interval", "0.05")
    assert printed.code == 0
    frames = printed.out.split(CLEAR)
    assert frames[0] == "" and len(frames) == 3
    assert all(frame.startswith("mTLS by destination workload:\n") for frame in frames[1:])
    as_lines = meshobs("stat", "--prometheus", stack.prometheus.url, "--mesh", stack.mesh, "-o", "json",
                       "--watch", "--watch-count", "2", "--interval", "0.05")
    documents = [json.loads(line) for line in as_lines.out.splitlines()]
    assert [d["kind"] for d in documents] == ["stat", "stat"]
    assert documents[0]["evaluated_at"] <= documents[1]["evaluated_at"]
