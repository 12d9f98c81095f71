"""`meshobs verify` against a distributed-store engine: VictoriaMetrics fed by vmagent (scraping
the replayed Istio/Linkerd proxies, Consul's real Envoys under real traffic, and the real
exporter), the rendered rules evaluated by vmalert — every dashboard query and rule expression
must pass there as on Prometheus."""

from __future__ import annotations

import pytest

from meshobs import cli
from tests.verify import stack
from tests.verify.test_verify_consul import start_consul
from tests.verify.test_verify_replayed import VERIFY_ARGS, start_replayed


def verify_passes(out, vm, mesh, capsys, args=VERIFY_ARGS) -> None:
    code = cli.main(["verify", "--prometheus", vm.url, "--dir", str(out), "--mesh", mesh, *args])
    printed = capsys.readouterr()
    print(printed.out, printed.err)
    assert [line for line in printed.out.splitlines() if line.startswith("FAIL")] == []
    assert code == 0


@pytest.mark.parametrize("mesh", ["istio", "linkerd"])
def test_every_panel_and_rule_returns_data_on_victoriametrics(mesh, processes, tmp_path, request, capsys):
    """Every rendered panel query and rule expression of the mesh returns series from VictoriaMetrics + vmalert."""
    out, vm = start_replayed(processes, tmp_path, request, mesh, store=stack.start_victoria)
    verify_passes(out, vm, mesh, capsys)


def test_every_consul_panel_and_rule_returns_data_on_victoriametrics(processes, tmp_path, request, capsys):
    """Every Consul panel query and rule expression returns series from real Envoys scraped by vmagent into VictoriaMetrics."""
    _, out, vm = start_consul(processes, tmp_path, request, store=stack.start_victoria)
    # The traffic is driven once, before the rules settle (a few seconds on vmalert, see
    # stack.start_victoria): a 30m dashboard's $__rate_interval (31s) still holds it. Over a
    # window without requests a latency quantile is NaN on Prometheus and no series at all on
    # VictoriaMetrics (MetricsQL drops NaN results); Grafana draws neither.
    verify_passes(out, vm, "consul", capsys, args=("--scrape-interval", "1s", "--range", "30m"))
