"""`meshobs verify` against a real Prometheus holding Istio and Linkerd series as their proxies
expose them (replayed), normalized by the real exporter, with the rendered rules loaded."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import pytest

from meshobs import cli
from meshobs.verify import sources
from meshobs.verify.check import Checker
from meshobs.verify.promapi import Prometheus
from meshobs.verify.variables import Timing
from tests.support import meshdata, meshdata_more
from tests.verify import stack
from tests.verify.replay import Replay

VERIFY_ARGS = ("--scrape-interval", "1s", "--range", "2m")


def start_replayed(processes, tmp_path, request, mesh: str, rename: dict[str, str] | None = None,
                   keep: Callable[[meshdata.Series], bool] = lambda series: True, store=stack.start):
    targets = meshdata_more.MESHES[mesh](time.time())
    for target in targets:
        target.series = [replace(s, name=(rename or {}).get(s.name, s.name)) for s in target.series if keep(s)]
    replay = Replay.start(request, targets)
    served = replay.addresses()
    jobs = {f"{mesh}-proxies": [stack.static_config(address, __metrics_path__=t.path, **t.labels) for t, address in served]}
    entries = [{"address": address, "mesh": mesh, "namespace": t.labels["namespace"],
                "workload": t.workload, "path": t.path} for t, address in served if t.proxy]
    return store(processes, tmp_path, mesh, jobs, entries)


def panel(outcomes, dashboard_file: str, title: str):
    found = [o for o in outcomes if o.query.source.endswith(dashboard_file) and o.query.item == title]
    assert found, f"no panel {title!r} in {dashboard_file}"
    return found[0]


@pytest.mark.parametrize("mesh", ["istio", "linkerd"])
def test_every_panel_and_rule_returns_data(mesh, processes, tmp_path, request, capsys):
    """Every rendered panel query and rule expression of the mesh returns series on replayed proxy data."""
    out, prometheus = start_replayed(processes, tmp_path, request, mesh)
    report = stack.report_dir(tmp_path, mesh)
    code = cli.main(["verify", "--prometheus", prometheus.url, "--dir", str(out), "--mesh", mesh,
                     "--report", str(report), *VERIFY_ARGS])
    printed = capsys.readouterr()
    failures = [line for line in printed.out.splitlines() if line.startswith("FAIL")]
    print(printed.out, printed.err)
    assert failures == []
    assert code == 0
    panels = {(q.source, q.uid) for q in sources.load(out, [mesh]) if q.kind == "panel"}
    assert (report / "index.html").read_text().count("<img ") == len(panels)  # one chart per panel, every panel drawn
    assert len(list((report / "charts").glob("*.png"))) == len(panels)


@pytest.mark.parametrize("mesh, source, destination", [
    ("istio", ("other", "intruder"), ("payments", "ledger")),
    ("linkerd", ("attacker", "scanner"), ("booksapp", "books")),
])
def test_security_dashboard_shows_the_injected_failures(mesh, source, destination, processes, tmp_path, request):
    """The denied source→destination pair is non-zero on the security dashboard, and Istio's TLS failure shows under its reason."""
    out, prometheus = start_replayed(processes, tmp_path, request, mesh)
    queries = [q for q in sources.load(out, [mesh]) if q.source.endswith("security.json")]
    checker = Checker(Prometheus(prometheus.url), Timing(scrape=1, step=1, range=120))
    outcomes = [checker.check(q) for q in queries]

    denied = panel(outcomes, "security.json", "Denied pairs").result
    pair = [s for s in denied if s["metric"].get("destination_namespace") == destination[0]
            and s["metric"].get("destination_service") == destination[1]]
    assert pair, denied
    assert float(pair[0]["value"][1]) > 0
    if mesh == "istio":  # Linkerd's proxy does not say which source was denied
        assert (pair[0]["metric"]["source_namespace"], pair[0]["metric"]["source_workload"]) == source
    denials = panel(outcomes, "security.json", "Authorization denials by destination").result
    assert any(s["metric"].get("destination_workload") == destination[1] and float(s["value"][1]) > 0 for s in denials)
    if mesh == "istio":  # linkerd2-proxy has no handshake-failure counter
        tls = panel(outcomes, "security.json", "TLS handshake failures by destination and reason").result
        failing = {(s["metric"]["destination_workload"], s["metric"]["reason"]) for s in tls if float(s["value"][1]) > 0}
        assert failing == {("ledger", "untrusted_cert")}


def test_a_renamed_metric_fails_every_panel_and_rule_reading_it(processes, tmp_path, request, capsys):
    """Istio data whose latency histogram is in seconds instead of milliseconds fails the latency panels and rules by name."""
    unit = "istio_request_duration_milliseconds"
    rename = {f"{unit}{suffix}": f"istio_request_duration_seconds{suffix}" for suffix in ("_bucket", "_sum", "_count")}
    out, prometheus = start_replayed(processes, tmp_path, request, "istio", rename)
    code = cli.main(["verify", "-v", "--prometheus", prometheus.url, "--dir", str(out), "--mesh", "istio", *VERIFY_ARGS])
    failures = stack.failures(capsys.readouterr().out)

    assert code == 1
    assert any(problem.startswith("selector istio_request_duration_milliseconds_bucket") for problem in
               failures["dashboards/istio/service.json: Istio / Service / panel 'Latency' [A]"])
    assert failures["alerts/istio/recording-rules.yaml: meshobs-istio-traffic / recording rule "
                    "'destination_service:mesh_request_duration_seconds:histogram_quantile_rate5m'"]
    assert any("panel 'p99 latency by service'" in place for place in failures)
    assert all("latency" in place.lower() or "duration" in place for place in failures), failures


def test_series_from_one_reporter_only_fail_the_panels_needing_the_other(processes, tmp_path, request, capsys):
    """Istio data without destination-reported series (a relabelling dropped them) fails the workload panels and
    the destination selectors by name, while service numbers still come from the callers' side."""
    out, prometheus = start_replayed(processes, tmp_path, request, "istio",
                                     keep=lambda s: ("reporter", "destination") not in s.labels)
    code = cli.main(["verify", "-v", "--prometheus", prometheus.url, "--dir", str(out), "--mesh", "istio", *VERIFY_ARGS])
    lines = capsys.readouterr().out.splitlines()

    assert code == 1

    def group(cause: str) -> list[str]:
        """The places listed under the grouped failure `cause`."""
        start = next(i for i, line in enumerate(lines) if line.startswith(f"FAIL {cause} → "))
        places = []
        for line in lines[start + 1:]:
            if not line.startswith("    "):
                break
            places.append(line.strip())
        assert lines[start] == f"FAIL {cause} → {len(places)} queries:"
        return places

    # workload numbers (mTLS, plaintext, the security dashboards' $namespace) need the destination's view
    assert "dashboards/istio/security.json: Istio / Security / panel 'mTLS coverage' [A]" in group(
        '$namespace has no values: label_values(destination_workload:mesh_requests:rate5m{mesh="istio", cluster=~".*"}, '
        'destination_namespace) is empty')
    assert ("alerts/istio/recording-rules.yaml: meshobs-istio-traffic / recording rule "
            "'destination_service:mesh_requests:rate5m'") in group(
        'selector istio_requests_total{reporter=~"destination|waypoint"} matches no series')
    # the callers still count every call: the service's request rate has series
    assert not any(line.startswith("FAIL returns no series") and "mesh_requests:rate5m" in line for line in lines)
