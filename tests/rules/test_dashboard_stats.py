"""The dashboards' stat queries, evaluated by the real promtool over the rendered recording rules on
each mesh's own series: ratios are ratios of sums, 1 (100%) on a mesh that never failed, finite
with idle workloads next to busy ones, within [0, 1], and a number (never empty) on an idle mesh."""

from __future__ import annotations

import json
import subprocess

import pytest

from meshobs import build, checks, config, yamlfmt
from meshobs.meshes import DIALECTS
from tests.rules.traffic import MeshTraffic, constant, counter, series
from tests.support.procs import require_binary

NS = "shop"
STATS = (
    ("overview", "Success ratio"),
    ("overview", "mTLS coverage"),
    ("overview", "Requests"),
    ("overview", "Authorization denials"),
    ("overview", "TLS handshake failures"),
    ("service", "5xx ratio"),
    ("security", "mTLS coverage"),
    ("security", "Plaintext requests"),
    ("security", "TLS failures"),
    ("security", "Authorization denials"),
)


def _idle(t: MeshTraffic, service: str) -> list[dict]:
    """A workload whose counters exist but do not move."""
    return [{**s, "values": constant(500, 15)} for s in t.requests(NS, service, "200", (0, 15))]


def _scenarios(mesh: str) -> dict[str, tuple[list[dict], dict[str, float]]]:
    t = MeshTraffic(mesh)
    busy = t.requests(NS, "checkout", "200", (10, 15))
    failing = t.requests(NS, "checkout", "200", (5, 15)) + t.requests(NS, "checkout", "503", (5, 15))
    quiet = {"Authorization denials": 0, "TLS handshake failures": 0, "Plaintext requests": 0, "TLS failures": 0}
    return {
        "busy and idle, never failed": (busy + _idle(t, "ledger"), dict(
            quiet, **{"Success ratio": 1, "mTLS coverage": 1, "Requests": 10, "5xx ratio": 0})),
        "busy and idle, half failing": (failing + _idle(t, "ledger"), dict(
            quiet, **{"Success ratio": 0.5, "mTLS coverage": 1, "Requests": 10, "5xx ratio": 0.5})),
        "idle mesh": (_idle(t, "checkout") + _idle(t, "ledger"), dict(
            quiet, **{"Success ratio": 1, "mTLS coverage": 1, "Requests": 0, "5xx ratio": 0})),
    }


def _panel_query(artefacts: dict[str, bytes], mesh: str, board: str, title: str, kind: str | None = None) -> str:
    data = json.loads(artefacts[f"dashboards/{mesh}/{board}.json"])
    panels = [p for row in data["panels"] for p in [row, *(row.get("panels") or [])]]
    (panel,) = [p for p in panels if p.get("title") == title and kind in (None, p.get("type"))]
    return checks.substitute_grafana_variables(panel["targets"][0]["expr"])


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
def test_stat_panels_are_numbers_within_bounds_on_idle_and_busy_meshes(mesh, tmp_path):
    """Every ratio stat is 1 on a mesh that never failed and on an idle one, 0.5 when half the calls fail, never NaN or empty."""
    promtool = require_binary("promtool")
    artefacts = build.render(config.Config(), [DIALECTS[mesh]])
    rule_file = tmp_path / "recording-rules.yaml"
    rule_file.write_bytes(artefacts[f"alerts/{mesh}/recording-rules.yaml"])
    queries = {(board, title): _panel_query(artefacts, mesh, board, title, "stat") for board, title in STATS}
    tests = []
    for name, (series, expected) in _scenarios(mesh).items():
        tests.append({
            "name": name,
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                {"expr": expr, "eval_time": "10m", "exp_samples": [{"labels": "{}", "value": expected[title]}]}
                for (board, title), expr in queries.items()
            ],
        })
    test_file = tmp_path / "stats.yaml"
    test_file.write_text(yamlfmt.dump({"rule_files": [str(rule_file)], "evaluation_interval": "1m", "tests": tests}))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mesh, instances, pushes", [
    # two istiod pods; pushes of every type but the failed sends
    ("istio", [series("istio_build", {"component": "pilot", "tag": "1.24.2", "pod": f"istiod-{i}"}, constant(1, 15))
               for i in range(2)],
     [series("pilot_xds_pushes", {"type": kind, "pod": "istiod-0"}, counter((0.5, 15))) for kind in ("cds", "lds", "cds_senderr")]),
    # two controllers' start times (Unix timestamps): counted, never summed
    ("linkerd", [series("process_start_time_seconds", {"namespace": "linkerd", "pod": f"linkerd-destination-{i}"},
                        constant(1.7e9 + i, 15)) for i in range(2)], []),
])
def test_control_plane_panels_count_instances_and_leave_out_failed_pushes(mesh, instances, pushes, tmp_path):
    """Control-plane instances are a count of instances; configuration pushes do not count failed sends."""
    promtool = require_binary("promtool")
    artefacts = build.render(config.Config(), [DIALECTS[mesh]])
    expected = [{"expr": _panel_query(artefacts, mesh, "control-plane", "Control plane instances"), "eval_time": "10m",
                 "exp_samples": [{"labels": '{cluster="c1"}', "value": 2}]}]
    if pushes:
        expected.append({"expr": _panel_query(artefacts, mesh, "control-plane", "Configuration pushes"), "eval_time": "10m",
                         "exp_samples": [{"labels": '{cluster="c1"}', "value": 1}]})
    test_file = tmp_path / "control-plane.yaml"
    test_file.write_text(yamlfmt.dump({"rule_files": [], "evaluation_interval": "1m", "tests": [
        {"name": "two instances", "interval": "1m", "input_series": instances + pushes, "promql_expr_test": expected}]}))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
