"""`meshobs verify` on hand-written dashboard and rule fixtures against a real Prometheus: what it
reports for a good, a broken, a renamed-metric and a masked query, and for an alert."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from meshobs import cli
from tests.support.meshdata import Target, counter
from tests.support.procs import require_binary, wait_until
from tests.support.prom import start_prometheus
from tests.verify import stack
from tests.verify.replay import Replay

FIXTURES = Path(__file__).parent / "fixtures"


def demo_target() -> Target:
    series = [counter("demo_requests_total", {"namespace": ns, "service": "api"}, 2.0) for ns in ("a", "b")]
    return Target("/metrics", {"namespace": "demo"}, "demo", "demo", series)


def test_verify_names_each_failing_query_and_its_reason(processes, tmp_path, request, capsys):
    """Errors, empty results, variables without values, empty selectors hidden by `or vector(0)` and too short windows fail by dashboard, panel and query; emptiness by design and non-PromQL targets are listed."""
    out = tmp_path / "out"
    shutil.copytree(FIXTURES, out)
    replay = Replay.start(request, [demo_target()])
    (target, address), = replay.addresses()
    prometheus = start_prometheus(processes, tmp_path, {"demo": [stack.static_config(address)]},
                                  rule_files=[out / "alerts" / "demo" / "rules.yaml"])
    stack.wait_for_data(prometheus, mesh=None)

    code = cli.main(["verify", "--prometheus", prometheus.url, "--dir", str(out), "--scrape-interval", "1s",
                     "--range", "1m", "--report", str(tmp_path / "report")])
    printed = capsys.readouterr()

    assert code == 1
    report = tmp_path / "report" / "index.html"
    assert printed.out.splitlines() == [
        "FAIL selector demo_denied_total matches no series → 2 queries:",
        "    dashboards/demo/demo.json: Demo / panel 'Masked' [A]",
        "    alerts/demo/rules.yaml: demo / alert 'DemoDenials'",
        "FAIL dashboards/demo/demo.json: Demo / panel 'Broken' [A]: query failed: bad_data: invalid parameter "
        "\"query\": 1:34: parse error: unclosed left parenthesis",
        "    query: sum(rate(demo_requests_total[4s])",
        "FAIL dashboards/demo/demo.json: Demo / panel 'Renamed' [A]: returns no series",
        "FAIL dashboards/demo/demo.json: Demo / panel 'Renamed' [A]: selector demo_request_seconds_total matches no series",
        "    query: sum(rate(demo_request_seconds_total[4s]))",
        "note dashboards/demo/demo.json: Demo / panel 'Denied requests log' [A]: not run: a loki query, not PromQL",
        "FAIL dashboards/demo/demo.json: Demo / panel 'Short window' [A]: range [1s] is shorter than two scrape "
        "intervals (1s each): empty whenever it holds one sample",
        "    query: sum(rate(demo_requests_total[1s])) or vector(0)",
        "note dashboards/demo/demo.json: Demo / panel 'Firing alerts' [A]: selector ALERTS{alertstate=\"firing\"} "
        "matches no series (expected: ALERTS exist only while an alert fires; the panel shows 0 through `or vector(0)` otherwise)",
        "FAIL dashboards/demo/zones.json: Zones / panel 'Requests by zone' [A]: "
        "$zone has no values: demo_requests_total has series, none with the label zone (docs/labels.md says what "
        "sets it)",
        "    query: sum by (zone) (rate(demo_requests_total{zone=~\"$zone\"}[$__rate_interval]))",
        "note dashboards/istio/healthy.json: Healthy mesh / panel 'Denials' [A]: returns no series "
        "(expected: empty while nothing is denied: the series appear with the first denial)",
        "note dashboards/istio/healthy.json: Healthy mesh / panel 'Denials' [A]: selector "
        "istio_requests_total{reporter=\"destination\",response_code=\"403\"} matches no series "
        "(expected: empty while nothing is denied: the series appear with the first denial)",
        "FAIL dashboards/istio/healthy.json: Healthy mesh / panel 'Requests' [A]: returns no series",
        "FAIL dashboards/istio/healthy.json: Healthy mesh / panel 'Requests' [A]: selector "
        "istio_requests_total{reporter=\"destination\"} matches no series",
        "    query: sum(rate(istio_requests_total{reporter=\"destination\"}[4s]))",
        f"report: {report}",
        "",
        "mesh   kind             queries  ok  failed  excused",
        "demo   panels                 8   3       5        2",
        "demo   recording rules        1   1       0        0",
        "demo   alerts                 2   1       1        0",
        "istio  panels                 2   1       1        1",
        "total                        13   6       7        3",
    ]
    assert printed.err.strip() == "13 queries: 6 ok, 7 failed, 3 with declared exceptions"
    index = report.read_text()
    assert "Good" in index and 'src="charts/demo-demo-2.png"' in index
    assert (tmp_path / "report" / "charts" / "demo-demo-2.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def openmetrics(start: float, samples: int, step: float) -> str:
    lines = ["# TYPE demo_requests counter"]
    for ns in ("a", "b"):
        lines += [f'demo_requests_total{{namespace="{ns}",service="api"}} {i * 2 * step:g} {start + i * step:.0f}'
                  for i in range(samples)]
    return "\n".join(lines) + "\n# EOF\n"


def test_backfilled_data_is_verified_at_its_own_time(processes, tmp_path, capsys):
    """Data backfilled with promtool two hours back answers with --at inside it, and is empty at now."""
    start = int(time.time()) - 7200
    source = tmp_path / "demo.om"
    source.write_text(openmetrics(start, samples=40, step=15))
    data = tmp_path / "prometheus" / "data"
    data.mkdir(parents=True)
    subprocess.run([require_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                   check=True, capture_output=True)
    prometheus = start_prometheus(processes, tmp_path, {})
    wait_until(lambda: prometheus.query(f"demo_requests_total @ {start + 300}"), what="backfilled block loaded")

    def good_panel_problems(*extra: str) -> list[str]:
        cli.main(["verify", "-v", "--prometheus", prometheus.url, "--dir", str(FIXTURES), "--scrape-interval", "15s",
                  "--range", "10m", *extra])
        return stack.failures(capsys.readouterr().out).get("dashboards/demo/demo.json: Demo / panel 'Good' [A]", [])

    assert good_panel_problems("--at", str(start + 500)) == []
    assert good_panel_problems() == ["$namespace has no values: label_values(demo_requests_total, namespace) is empty"]
