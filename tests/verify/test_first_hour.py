"""The first hour with `meshobs verify` and `meshobs check --prometheus`, driven as a user would:
a wrong URL, a Prometheus a few seconds old, and sidecars without the labels the rules group by."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from meshobs import config, recordings_traffic
from tests.support.consul_envoy import _public_listener
from tests.support.envoy import start_envoy
from tests.support.prom import start_prometheus
from tests.verify import stack

# what the dashboards' $cluster variable reads: any HTTP, TCP or proxy recording of the mesh
CLUSTER_SOURCE = recordings_traffic.any_traffic(config.Config(), config.Config().alerts.error_rate.window).ref("consul")
HINT = ("give the base URL that serves /api/v1/query, e.g. http://127.0.0.1:9090, with the path of "
        "Prometheus's --web.route-prefix if it has one")


def meshobs(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshobs", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def consul_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    assert meshobs("build", "--out", str(out), "--mesh", "consul").returncode == 0
    return out


def test_a_url_that_is_not_a_prometheus_api_is_one_line_and_exit_2(processes, tmp_path, consul_out):
    """A route-prefix mistake on a real Prometheus, and an HTML page, each end verify with one line naming the URL, exit 2."""
    prometheus = start_prometheus(processes, tmp_path, {})
    wrong = f"{prometheus.url}/prometheus"
    result = meshobs("verify", "--prometheus", wrong, "--dir", str(consul_out))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"meshobs verify: error: {wrong} is not a Prometheus API: GET /api/v1/status/buildinfo "
                             f"answered HTTP 404 text/plain, not a Prometheus JSON document; {HINT}\n")

    class Html(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body>Grafana</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        result = meshobs("verify", "--prometheus", url, "--dir", str(consul_out))
        check = meshobs("check", str(consul_out), "--prometheus", url)
    finally:
        server.shutdown()
        server.server_close()
    message = (f"{url} is not a Prometheus API: GET /api/v1/status/buildinfo answered HTTP 200 text/html, "
               f"not a Prometheus JSON document; {HINT}\n")
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"meshobs verify: error: {message}")
    assert (check.returncode, check.stderr) == (2, f"meshobs check: error: {message}")


def test_a_young_prometheus_gets_one_warning_and_grouped_failures(processes, tmp_path, consul_out):
    """Right after start, verify warns once how long to wait, groups the failures of one cause and shows a summary table."""
    rules = sorted((consul_out / "alerts/consul").glob("*.yaml"))
    prometheus = start_prometheus(processes, tmp_path, {}, rule_files=rules, evaluation_interval="30s")
    result = meshobs("verify", "--prometheus", prometheus.url, "--dir", str(consul_out), "--scrape-interval", "1s")
    assert result.returncode == 1
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2
    assert re.fullmatch(
        rf"meshobs verify: warning: Prometheus at {re.escape(prometheus.url)} started \d+s ago and \d+ of \d+ rule "
        r"groups have not been evaluated yet \(meshobs-consul-[a-z-]+(, meshobs-consul-[a-z-]+)*\): rates need two "
        r"scrapes \(2 x 1s\) and recorded series two rule evaluations \(2 x 30s\), so queries may be empty for about "
        r"(\d+m)?\d+s more; run verify again then, or with --wait", warnings[0]), warnings[0]
    assert warnings[1] == "meshobs verify: warning: see the warning above before trusting these failures"
    lines = result.stdout.splitlines()
    cluster = f"FAIL $cluster has no values: label_values({CLUSTER_SOURCE}, cluster) is empty → "
    first = lines[0]
    assert first.startswith(cluster) and re.fullmatch(r"\d+ queries:", first.removeprefix(cluster)), first
    assert all(re.fullmatch(r"    dashboards/consul/[a-z-]+\.json: Consul / [A-Za-z ]+ / panel '.+' \[A\]", line)
               for line in lines[1:6]), lines[1:6]
    assert re.fullmatch(r"    … and \d+ more \(-v lists them all\)", lines[6])
    table = lines[lines.index("mesh    kind             queries  ok  failed  excused"):]
    assert [row.split()[:2] for row in table[1:]] == [
        ["consul", "panels"], ["consul", "recording"], ["consul", "alerts"], ["total", table[-1].split()[1]]]
    assert re.fullmatch(r"\d+ queries: \d+ ok, \d+ failed, \d+ with declared exceptions", result.stderr.splitlines()[-1])


def test_rule_groups_not_loaded_are_named_up_front(processes, tmp_path, consul_out):
    """A Prometheus without the rendered rule files gets one warning naming the groups and files to load."""
    prometheus = start_prometheus(processes, tmp_path, {})
    result = meshobs("verify", "--prometheus", prometheus.url, "--dir", str(consul_out), "--scrape-interval", "1s")
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if "warning" in line] == [
        f"meshobs verify: warning: Prometheus at {prometheus.url} has not loaded the rule groups meshobs-consul-alerts, "
        "meshobs-consul-between-clusters, meshobs-consul-query, meshobs-consul-security, meshobs-consul-tcp-and-upstreams, "
        "meshobs-consul-traffic: add alerts/consul/alerting-rules.yaml, "
        "alerts/consul/recording-rules.yaml to its rule_files (deploy/prometheus/ does); the dashboards read the "
        "series these rules record",
        "meshobs verify: warning: see the warning above before trusting these failures",
    ]


def test_wait_polls_until_prometheus_is_old_enough(processes, tmp_path, consul_out):
    """--wait holds the run until two scrapes and two rule evaluations have happened; then the only
    warning left is that Prometheus scrapes no Consul sidecar."""
    rules = sorted((consul_out / "alerts/consul").glob("*.yaml"))
    prometheus = start_prometheus(processes, tmp_path, {}, rule_files=rules)
    result = meshobs("verify", "--prometheus", prometheus.url, "--dir", str(consul_out), "--scrape-interval", "1s",
                     "--wait", "30s")
    stderr = result.stderr.splitlines()
    assert re.fullmatch(r"meshobs verify: info: waiting up to 30s for Prometheus to have two scrapes and two rule "
                        r"evaluations \(about \d+s\)", stderr[0]), stderr[0]
    # old enough now; what is left to say is that nothing scrapes a Consul sidecar
    assert [line for line in stderr if "warning" in line] == [
        f"meshobs verify: warning: Prometheus at {prometheus.url} has no request series of Consul "
        "(envoy_http_downstream_rq_xx): is it scraping the sidecars? deploy/prometheus/prometheus.yml has the scrape "
        "jobs, docs/labels.md the labels they must set",
        "meshobs verify: warning: see the warning above before trusting these failures",
    ]


def test_sidecars_without_the_labels_the_rules_group_by_are_reported(processes, tmp_path, consul_out):
    """An Envoy without Consul's bootstrap stats tags: verify names the label the rules group by, and
    `check --prometheus` names metric, label and what should set it (docs/labels.md); verify of an
    all-mesh build against this Consul-only Prometheus suggests --mesh consul."""
    envoy_dir = tmp_path / "envoy"
    envoy_dir.mkdir()
    envoy = start_envoy(processes, envoy_dir, customize=_public_listener)
    for _ in range(3):
        assert envoy.request(envoy.pki.allowed) == 200
    rules = sorted((consul_out / "alerts/consul").glob("*.yaml"))
    jobs = {"consul-proxies": [stack.static_config(f"127.0.0.1:{envoy.admin_port}", namespace="default",
                                                   __metrics_path__="/stats/prometheus")]}
    prometheus = start_prometheus(processes, tmp_path, jobs, rule_files=rules)
    stack.wait_for_data(prometheus, mesh=None)

    result = meshobs("verify", "-v", "--prometheus", prometheus.url, "--dir", str(consul_out), "--mesh", "consul",
                     "--scrape-interval", "1s", "--range", "1m")
    assert result.returncode == 1
    failures = stack.failures(result.stdout)
    # Consul's rules read only series with the bootstrap's tags: these are not the mesh's
    unscoped = 'selector envoy_http_downstream_rq_xx{local_cluster!="",envoy_http_conn_manager_prefix="public_listener"} matches no series'
    assert unscoped in failures["alerts/consul/recording-rules.yaml: meshobs-consul-traffic / recording rule "
                                "'destination_service:mesh_requests:rate5m'"]

    everything = tmp_path / "all"
    assert meshobs("build", "--out", str(everything)).returncode == 0
    mixed = meshobs("verify", "--prometheus", prometheus.url, "--dir", str(everything), "--scrape-interval", "1s")
    assert mixed.stderr.splitlines()[0].endswith(
        "the dashboards read the series these rules record; if you do not run istio, linkerd, verify only what you "
        "run: --mesh consul"), mixed.stderr.splitlines()[0]

    check = meshobs("check", str(consul_out), "--prometheus", prometheus.url)
    assert check.returncode == 1
    bootstrap = ("the stats tags of Consul's Envoy bootstrap (`local_cluster`, `consul_destination_*`), present when "
                 "the sidecar was started by `consul connect envoy` or consul-dataplane")
    assert (f"{prometheus.url}: 5 of 5 envoy_http_downstream_rq_xx{{envoy_http_conn_manager_prefix=\"public_listener\"}} "
            f"series have no local_cluster label (read as destination_service, destination_workload); it comes from "
            f"{bootstrap} (docs/labels.md)") in check.stdout.splitlines()
    assert not [line for line in check.stdout.splitlines() if "no namespace label" in line or "no cluster label" in line]
    assert re.fullmatch(r".*; \d+ label requirements at " + re.escape(prometheus.url) + r": \d+ problem\(s\)",
                        check.stderr.strip())


def test_labels_doc_is_current():
    """docs/labels.md is what `python -m meshobs.labels` renders from the dialects and scrape jobs."""
    from meshobs import labels

    assert (Path(__file__).parents[2] / "docs/labels.md").read_text() == labels.markdown()


def test_progress_on_a_terminal_and_multi_line_queries_indented(processes, tmp_path):
    """On a terminal verify rewrites one progress line; a failing multi-line query is printed with each line indented."""
    import json
    import os
    import pty

    board = tmp_path / "out/dashboards/demo/multi.json"
    board.parent.mkdir(parents=True)
    expr = "sum by (namespace) (\n  rate(nothing_total[5m])\n)"
    board.write_text(json.dumps({"title": "Multi", "uid": "multi", "panels": [
        {"id": 1, "type": "timeseries", "title": "Two lines", "targets": [{"refId": "A", "expr": expr}]}]}))
    prometheus = start_prometheus(processes, tmp_path, {})
    master, slave = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "meshobs", "verify", "--prometheus", prometheus.url, "--dir",
                                 str(tmp_path / "out"), "--at", "0"], stdout=subprocess.PIPE, stderr=slave, text=True,
                                timeout=60)
        os.close(slave)
        terminal = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(master)
    assert result.returncode == 1
    assert result.stdout.splitlines()[:4] == [
        "FAIL dashboards/demo/multi.json: Multi / panel 'Two lines' [A]: returns no series",
        "FAIL dashboards/demo/multi.json: Multi / panel 'Two lines' [A]: selector nothing_total matches no series",
        "    query: sum by (namespace) (",
        "             rate(nothing_total[5m])",
    ]
    assert result.stdout.splitlines()[4] == "           )"
    assert b"\rverify: 1/1 queries, 1 failed\x1b[K\r\x1b[K" in terminal


def test_verify_warns_about_a_mesh_the_last_build_did_not_write(tmp_path):
    """A dashboards/istio/ left from an older build next to a consul-only build is named stale and skipped."""
    out = tmp_path / "out"
    assert meshobs("build", "--out", str(out), "--mesh", "consul").returncode == 0
    (out / "dashboards/istio").mkdir()
    (out / "dashboards/istio/overview.json").write_text("{}")
    result = meshobs("verify", "--prometheus", "http://127.0.0.1:9", "--dir", str(out))
    assert result.returncode == 2
    assert result.stderr == (
        f"meshobs verify: warning: {out}: dashboards/istio/ not written by the last build (meshobs build --mesh consul, "
        "meshobs-build.json): stale, not verified; rebuild with that mesh or remove the folders\n"
        "meshobs verify: error: Prometheus at http://127.0.0.1:9 is not reachable: [Errno 111] Connection refused\n")


def test_series_without_the_cluster_label_are_named_as_such(processes, tmp_path, consul_out):
    """A Consul sidecar scraped by a job that sets no cluster label: verify says the series exist but
    lack the label, and `check --prometheus` names the label and what sets it."""
    from tests.support.consul_envoy import consul_bootstrap

    def consul_sidecar(config: dict) -> None:
        _public_listener(config)
        consul_bootstrap(config, "backend")

    envoy_dir = tmp_path / "envoy"
    envoy_dir.mkdir()
    envoy = start_envoy(processes, envoy_dir, customize=consul_sidecar)
    assert envoy.request(envoy.pki.allowed) == 200
    rules = sorted((consul_out / "alerts/consul").glob("*.yaml"))
    jobs = {"my-own-job": [{"targets": [f"127.0.0.1:{envoy.admin_port}"],
                            "labels": {"namespace": "default", "__metrics_path__": "/stats/prometheus"}}]}
    prometheus = start_prometheus(processes, tmp_path, jobs, rule_files=rules)
    stack.wait_for_data(prometheus, mesh=None)

    result = meshobs("verify", "-v", "--prometheus", prometheus.url, "--dir", str(consul_out), "--scrape-interval", "1s",
                     "--range", "1m")
    cause = f"$cluster has no values: {CLUSTER_SOURCE} has series, none with the label cluster (docs/labels.md says what sets it)"
    assert cause in stack.failures(result.stdout)["dashboards/consul/overview.json: Consul / Overview / panel 'Requests' [A]"]

    check = meshobs("check", str(consul_out), "--prometheus", prometheus.url)
    assert check.returncode == 1
    assert (f"{prometheus.url}: 5 of 5 envoy_http_downstream_rq_xx{{envoy_http_conn_manager_prefix=\"public_listener\"}} "
            "series have no cluster label (read as cluster); it comes from every scrape job: `deploy.cluster` "
            "(`default`) → `cluster` (docs/labels.md)") in check.stdout.splitlines()
