"""`meshobs verify` for Consul against real Envoy sidecars under real traffic (allowed, denied by
intention, TLS failures), with Consul's stats tags, normalized by the real exporter."""

from __future__ import annotations

import time

from meshobs import cli
from meshobs.verify import sources
from meshobs.verify.check import Checker
from meshobs.verify.promapi import Prometheus
from meshobs.verify.variables import Timing
from tests.support import meshdata_more
from tests.support.consul_envoy import start_consul_mesh, tcp_connect
from tests.verify import stack
from tests.verify.replay import Replay
from tests.verify.test_verify_replayed import VERIFY_ARGS, panel


def start_consul(processes, tmp_path, request, store=stack.start):
    mesh = start_consul_mesh(processes, tmp_path)
    sidecars = mesh.sidecars()
    pods = {name: f"{name}-5b7c9-k2m4p" for name in sidecars}
    # the labels the rendered consul-proxies job attaches (namespace, pod, datacenter)
    jobs = {"consul-sidecars": [stack.static_config(f"127.0.0.1:{envoy.admin_port}", namespace="default",
                                                    pod=pods[name], datacenter="dc1",
                                                    __metrics_path__="/stats/prometheus")
                                for name, envoy in sidecars.items()]}
    # Consul servers' telemetry and the kubelet's cAdvisor are replayed beside the real sidecars
    replayed = Replay.start(request, meshdata_more.consul_servers(time.time()) + [meshdata_more.consul_cadvisor(pods)])
    jobs["consul-servers-and-kubelet"] = [stack.static_config(address, __metrics_path__=t.path, **t.labels)
                                          for t, address in replayed.addresses()]
    entries = [{"address": f"127.0.0.1:{envoy.admin_port}", "mesh": "consul", "namespace": "default",
                "workload": name, "path": "/stats/prometheus"} for name, envoy in sidecars.items()]

    def traffic():
        for _ in range(10):
            assert mesh.frontend.request() == 200
            assert mesh.intruder.request() == 403
            assert mesh.backend.request(mesh.backend.pki.foreign) is None  # untrusted CA
            assert mesh.backend.request(None) is None  # no client certificate
            assert mesh.backend.request(None, tls=False) is None  # plaintext to the mTLS port
            assert tcp_connect(mesh.db, mesh.backend.pki.allowed).startswith(b"HTTP/1.1 200")  # L4 intention allows
            assert tcp_connect(mesh.db, mesh.backend.pki.denied) == b""  # L4 intention denies: closed
            assert mesh.frontend.tcp_request().startswith(b"HTTP/1.1 200")  # through frontend's TCP upstream
            assert mesh.frontend.request(peer=True) == 200  # to backend of the cluster peer `west`

    out, prometheus = store(processes, tmp_path, "consul", jobs, entries, traffic)
    return mesh, out, prometheus


def outcomes_of(checker: Checker, out, dashboard_file: str):
    return [checker.check(q) for q in sources.load(out, ["consul"]) if q.source.endswith(dashboard_file)]


def test_every_panel_and_rule_returns_data_and_security_shows_failures(processes, tmp_path, request, capsys):
    """Every Consul panel and rule returns series from real Envoys; the denied pair, each TLS failure reason are non-zero; the TCP caller of db and the call to the cluster peer's backend are charted."""
    mesh, out, prometheus = start_consul(processes, tmp_path, request)
    report = stack.report_dir(tmp_path, "consul")
    code = cli.main(["verify", "--prometheus", prometheus.url, "--dir", str(out), "--mesh", "consul",
                     "--report", str(report), *VERIFY_ARGS])
    printed = capsys.readouterr()
    print(printed.out, printed.err)
    failures = [line for line in printed.out.splitlines() if line.startswith("FAIL")]

    queries = [q for q in sources.load(out, ["consul"]) if q.source.endswith("security.json")]
    checker = Checker(Prometheus(prometheus.url), Timing(scrape=1, step=1, range=120))
    outcomes = [checker.check(q) for q in queries]
    denied = panel(outcomes, "security.json", "Denied pairs").result
    pairs = {(s["metric"].get("source_workload"), s["metric"].get("destination_service")): float(s["value"][1])
             for s in denied}
    assert pairs.get(("intruder", "backend"), 0) > 0, denied
    assert ("frontend", "backend") not in pairs
    failures_by_reason = panel(outcomes, "security.json", "TLS handshake failures by destination and reason").result
    failing = {(s["metric"]["destination_workload"], s["metric"]["reason"]) for s in failures_by_reason
               if float(s["value"][1]) > 0}
    assert failing == {("backend", "untrusted_cert"), ("backend", "no_client_cert"), ("backend", "not_tls")}
    l4 = panel(outcomes, "security.json", "Authorization denials by destination").result
    assert {s["metric"]["destination_workload"] for s in l4 if float(s["value"][1]) > 0} >= {"backend", "db"}
    tcp = panel(outcomes_of(checker, out, "service.json"), "service.json", "TCP bytes exchanged with callers").result
    # charted (the instant's rate may already be 0: the traffic ran before the checks)
    assert ("frontend", "db") in {(s["metric"]["source_workload"], s["metric"]["destination_service"]) for s in tcp}
    between = panel(outcomes_of(checker, out, "clusters.json"), "clusters.json", "Requests by cluster pair").result
    assert {(s["metric"]["source_cluster"], s["metric"]["destination_cluster"]) for s in between} == {("dc1", "dc1"), ("dc1", "west")}
    callers = panel(outcomes_of(checker, out, "service.json"), "service.json", "Requests by caller and cluster").result
    assert ("frontend", "west") in {(s["metric"]["source_workload"], s["metric"]["destination_cluster"]) for s in callers}
    assert failures == []
    assert code == 0
