"""`meshobs verify` for Consul against real Envoy sidecars under real traffic (allowed, denied by
intention, TLS failures), with Consul's stats tags, normalized by the real exporter."""

from __future__ import annotations

from meshobs import cli
from meshobs.verify import sources
from meshobs.verify.check import Checker
from meshobs.verify.promapi import Prometheus
from meshobs.verify.variables import Timing
from tests.support.consul_envoy import start_consul_mesh
from tests.verify import stack
from tests.verify.test_verify_replayed import VERIFY_ARGS, panel


def start_consul(processes, tmp_path):
    mesh = start_consul_mesh(processes, tmp_path)
    sidecars = mesh.sidecars()
    # the labels the rendered consul-proxies job attaches (namespace, pod, datacenter)
    jobs = {"consul-sidecars": [stack.static_config(f"127.0.0.1:{envoy.admin_port}", namespace="default",
                                                    pod=f"{name}-5b7c9-k2m4p", datacenter="dc1",
                                                    __metrics_path__="/stats/prometheus")
                                for name, envoy in sidecars.items()]}
    entries = [{"address": f"127.0.0.1:{envoy.admin_port}", "mesh": "consul", "namespace": "default",
                "workload": name, "path": "/stats/prometheus"} for name, envoy in sidecars.items()]

    def traffic():
        for _ in range(10):
            assert mesh.frontend.request() == 200
            assert mesh.intruder.request() == 403
            assert mesh.backend.request(mesh.backend.pki.foreign) is None

    out, prometheus = stack.start(processes, tmp_path, "consul", jobs, entries, traffic)
    return mesh, out, prometheus


def test_every_panel_and_rule_returns_data_and_security_shows_failures(processes, tmp_path, capsys):
    """Every Consul panel and rule returns series from real Envoys; the denied pair and the TLS failure reason are non-zero."""
    mesh, out, prometheus = start_consul(processes, tmp_path)
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
    assert any(s["metric"].get("reason") == "untrusted_cert" and s["metric"].get("destination_workload") == "backend"
               for s in failures_by_reason), failures_by_reason
    assert failures == []
    assert code == 0
