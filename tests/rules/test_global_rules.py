"""The global rule files: per-cluster recordings rolled up across clusters, read by promtool and
by vmalert on VictoriaMetrics, with two clusters' traffic for the same service."""

from __future__ import annotations

import subprocess
import time

import pytest
import yaml

from meshobs import build, checks, config, recordings, recordings_crosscluster, yamlfmt
from meshobs.meshes import DIALECTS
from meshobs.render import global_rules
from tests.rules.traffic import MeshTraffic, counter, in_cluster
from tests.support import promtool_file
from tests.support.procs import require_binary
from tests.support.victoria import replay_rules, start_victoria_metrics

NS, SVC = "shop", "checkout"
T0 = (int(time.time()) // 3600 - 24) * 3600


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("global")
    for path, content in build.render(config.Config(), DIALECTS.values()).items():
        if path.startswith("alerts/"):
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            (out / path).write_bytes(content)
    return out


def _files(rendered, mesh):
    return [rendered / f"alerts/{mesh}/recording-rules.yaml", rendered / global_rules.path(mesh)]


def _promtool_test(files, tmp_path, input_series: list[dict], expr_tests: list[dict]) -> None:
    """`promtool test rules` of the `promql_expr_test` entries `expr_tests` on the rule `files`, fed `input_series`
    every minute; fails with promtool's output."""
    test = {"rule_files": [str(p) for p in files], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": input_series, "promql_expr_test": expr_tests}]}
    (tmp_path / "test.yaml").write_text(yamlfmt.dump(test))
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(tmp_path / "test.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _two_clusters(mesh: str) -> list[dict]:
    """30 req/s all answered in cluster c1, 10 req/s all failing in c2, for one service."""
    t = MeshTraffic(mesh)
    in_c2 = in_cluster("c2", t.requests(NS, SVC, "503", (10, 20)))
    return t.requests(NS, SVC, "200", (30, 20)) + in_c2


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
def test_global_rules_read_only_recordings(mesh, rendered):
    """Every global rule reads only per-cluster or global recordings, never a raw series, and promtool accepts the file."""
    cfg = config.Config()
    per_cluster = {r.record for r in recordings.traffic_rules(cfg, DIALECTS[mesh]) + recordings.security_rules(cfg, DIALECTS[mesh])
                   + recordings_crosscluster.rules(cfg, DIALECTS[mesh])}
    document = yaml.safe_load((rendered / global_rules.path(mesh)).read_text())
    rules = [r for g in document["groups"] for r in g["rules"]]
    assert rules and all(r["record"].startswith("global_") for r in rules)
    assert all(checks.metric_names(r["expr"]) <= per_cluster | {r2["record"] for r2 in rules} for r in rules)
    result = subprocess.run([require_binary("promtool"), "check", "rules", *map(str, _files(rendered, mesh))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
def test_promtool_rolls_two_clusters_up(mesh, rendered, tmp_path):
    """Prometheus (promtool) sums the clusters' request rates and recomputes the error ratio from the sums: 10 / 40."""
    _promtool_test(_files(rendered, mesh), tmp_path, _two_clusters(mesh), [
        # one service (its namespace is the mesh's own notion: Consul's is its namespace)
        {"expr": 'count by (destination_service, mesh) (global_destination_service:mesh_requests:rate5m) * 0 + '
                 'sum by (destination_service, mesh) (global_destination_service:mesh_requests:rate5m)',
         "eval_time": "15m", "exp_samples": [{"labels": f'{{destination_service="{SVC}", mesh="{mesh}"}}', "value": 40}]},
        {"expr": "sum by (destination_service, mesh) (global_destination_service:mesh_request_errors:ratio_rate5m)",
         "eval_time": "15m", "exp_samples": [{"labels": f'{{destination_service="{SVC}", mesh="{mesh}"}}', "value": 0.25}]},
        {"expr": "count(global_destination_service:mesh_requests:rate5m)", "eval_time": "15m",
         "exp_samples": [{"labels": "{}", "value": 1}]},
    ])


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
def test_vmalert_rolls_two_clusters_up_on_victoriametrics(mesh, rendered, processes, tmp_path):
    """vmalert on VictoriaMetrics records the same roll-up: 40 req/s and a 25% error ratio, without a cluster label."""
    vm = start_victoria_metrics(processes, tmp_path)
    [case] = promtool_file.read({"tests": [{"interval": "1m", "input_series": _two_clusters(mesh)}]})
    vm.import_series(case.samples(), base=T0)
    replay_rules(vm, _files(rendered, mesh), tmp_path, start=T0, end=T0 + 15 * 60, interval="1m")
    at = T0 + 15 * 60
    requests = vm.query("global_destination_service:mesh_requests:rate5m", at)
    ratio = vm.query("global_destination_service:mesh_request_errors:ratio_rate5m", at)
    assert [({k: v for k, v in s["metric"].items() if k != "destination_namespace"}, float(s["value"][1]))
            for s in requests] == [
        ({"__name__": "global_destination_service:mesh_requests:rate5m", "destination_service": SVC, "mesh": mesh}, 40.0)]
    assert [({k: v for k, v in s["metric"].items() if k != "destination_namespace"}, float(s["value"][1]))
            for s in ratio] == [
        ({"__name__": "global_destination_service:mesh_request_errors:ratio_rate5m", "destination_service": SVC,
          "mesh": mesh}, 0.25)]


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
def test_promtool_rolls_the_pairs_between_clusters_up(mesh, rendered, tmp_path):
    """Calls to the other cluster counted in two store clusters (10 and 5 req/s) roll up by their two ends, without
    the cluster label: one pair of 15 req/s where the mesh names both ends, two where the caller's end is the store's
    cluster (Linkerd)."""
    from tests.rules.test_crosscluster_alerts_promtool import calls

    in_c1 = calls(mesh, True, "200", counter((10, 20)))
    in_c2 = in_cluster("c2", calls(mesh, True, "200", counter((5, 20))))
    expected = {"istio": [("west", "east", 15)], "linkerd": [("c1", "west", 10), ("c2", "west", 5)],
                "consul": [("dc1", "west", 15)]}[mesh]
    _promtool_test(_files(rendered, mesh), tmp_path, in_c1 + in_c2, [{
        "expr": "global_source_cluster_destination_cluster:mesh_cross_cluster_requests:rate5m", "eval_time": "15m",
        "exp_samples": [{"labels": f'global_source_cluster_destination_cluster:mesh_cross_cluster_requests:rate5m'
                                   f'{{destination_cluster="{d}", mesh="{mesh}", source_cluster="{s}"}}', "value": v}
                        for s, d, v in expected]}])
