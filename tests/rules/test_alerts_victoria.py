"""The promtool alert scenarios, replayed on a real distributed-store engine: every case's input
series imported with timestamps into VictoriaMetrics, the rendered rules evaluated by vmalert's
replay mode, and the alerts promtool expects at each eval_time firing there too (alert name,
firing state and exact label sets) — nothing more, nothing less.

Driven only by the promtool test document (tests/support/promtool_file.py reads it), so any
scenario added to tests/rules/test_alerts_promtool.py or test_crosscluster_alerts_promtool.py is
replayed here as well."""

from __future__ import annotations

import time

import pytest

from meshobs.meshes import DIALECTS
from meshobs.render.rules import ALERT_NAMES
from meshobs.render import rules_crosscluster
from tests.rules import test_crosscluster_alerts_promtool as crosscluster
from tests.rules.test_alerts_promtool import SCENARIOS, rule_files  # noqa: F401  (fixture)
from tests.support import promtool_file
from tests.support.victoria import replay_rules, rule_layers, start_victoria_metrics

# Samples start here: a whole hour four days ago, so that every rule window ([3d] at most) and
# every eval_time fall inside VictoriaMetrics's retention and before "now".
T0 = (int(time.time()) // 3600 - 4 * 24) * 3600


def replay_case(vm, case: promtool_file.Case, rules, tmp_path, interval: str) -> list[str]:
    """Mismatches between what promtool expects of `case` and what fires in VictoriaMetrics."""
    vm.delete_all()
    vm.import_series(case.samples(), base=T0)
    replay_rules(vm, rules, tmp_path, start=T0, end=T0 + case.end, interval=interval)
    problems = []
    for at, alertname, expected in case.expected_alerts:
        fired = vm.firing_at(alertname, T0 + at)
        want = sorted(expected, key=lambda labels: sorted(labels.items()))
        if fired != want:
            problems.append(f"{case.name!r} at {at:g}s: {alertname} expected {want}, VictoriaMetrics fired {fired}")
    return problems


# the alerts of every mesh and those on the way between clusters
REPLAYED = dict(SCENARIOS, **crosscluster.SCENARIOS)


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
@pytest.mark.parametrize("alertname", ALERT_NAMES + rules_crosscluster.ALERT_NAMES)
def test_promtool_scenarios_fire_the_same_on_victoriametrics(alertname, mesh, rule_files, processes, tmp_path):
    """vmalert on VictoriaMetrics fires exactly the alerts promtool expects in every scenario."""
    document = {"evaluation_interval": "1m", "tests": REPLAYED[alertname](mesh, DIALECTS[mesh].title)}
    vm = start_victoria_metrics(processes, tmp_path)
    problems = []
    for case in promtool_file.read(document):
        problems += replay_case(vm, case, sorted(rule_files[mesh]), tmp_path, document["evaluation_interval"])
    assert problems == []


def test_promtool_notation_expands_like_promtool():
    """Expanding notation, blanks and stale markers give promtool's samples, split into runs at stale markers."""
    assert promtool_file.expand("0+60x2 _ 7 stale 1-0.5x1 _x1 3", 60) == [
        [(0, 0.0), (60, 60.0), (120, 120.0), (240, 7.0)],
        [(360, 1.0), (420, 0.5), (600, 3.0)],
    ]
    assert promtool_file.parse_series('up{job="a\\"b", cluster="c1"}') == {"__name__": "up", "job": 'a"b', "cluster": "c1"}
    with pytest.raises(promtool_file.NotationError, match=r"^cannot read value '1x' in '0 1x'$"):
        promtool_file.expand("0 1x", 60)


def test_chained_rules_are_replayed_in_layers():
    """A rule reading another rule's recording is evaluated one layer after it; groups keep their names."""
    document = {"groups": [
        {"name": "g", "interval": "1m", "rules": [
            {"alert": "A", "expr": "b:ratio > 1"},
            {"record": "b:ratio", "expr": "a:rate / a:rate_total"},
            {"record": "a:rate", "expr": "rate(x[5m])"},
            {"record": "a:rate_total", "expr": "rate(y[5m])"},
        ]},
    ]}
    layers = rule_layers([document])
    assert [[r.get("record") or r.get("alert") for g in layer["groups"] for r in g["rules"]] for layer in layers] == [
        ["a:rate", "a:rate_total"], ["b:ratio"], ["A"]]
    assert all(g["name"] == "g" and g["interval"] == "1m" for layer in layers for g in layer["groups"])


def test_an_alert_that_does_not_fire_is_reported(rule_files, processes, tmp_path):
    """A scenario expecting an alert that VictoriaMetrics does not fire is reported with both label sets."""
    healthy = SCENARIOS["MeshExporterTargetDown"]("istio", "Istio")[1]
    wrong = dict(healthy, alert_rule_test=[{"eval_time": "10m", "alertname": "MeshExporterTargetDown",
                                            "exp_alerts": [{"exp_labels": {"severity": "warning"}}]}])
    vm = start_victoria_metrics(processes, tmp_path)
    [case] = promtool_file.read({"tests": [wrong]})
    assert replay_case(vm, case, sorted(rule_files["istio"]), tmp_path, "1m") == [
        "'healthy' at 600s: MeshExporterTargetDown expected [{'severity': 'warning'}], VictoriaMetrics fired []"]
