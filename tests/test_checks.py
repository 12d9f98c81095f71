"""Static checks: each catches the mistake it is named after."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshobs import build, checks, config, writer


@pytest.fixture
def tree(tmp_path) -> Path:
    writer.write(build.render(config.Config(), build.select_meshes(["istio"])), tmp_path)
    return tmp_path


def _edit_dashboard(tree: Path, edit) -> Path:
    path = tree / "dashboards/istio/security.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def _first_target_panel(data: dict) -> dict:
    return next(p for p in data["panels"] if p.get("targets"))


def test_grafana_variables_are_substituted_before_parsing():
    """`$__rate_interval`, `$var` and `${var}` become values a PromQL parser accepts."""
    expr = 'rate(x{a=~"$ns", b="${svc}"}[$__rate_interval])'
    assert checks.substitute_grafana_variables(expr) == 'rate(x{a=~".*", b=".*"}[5m])'
    assert checks.metric_names(checks.substitute_grafana_variables(expr)) == {"x"}


def test_name_regex_alternatives_count_as_metric_names():
    """A `__name__=~"a|b"` selector names both metrics."""
    assert checks.metric_names('sum(rate({__name__=~"a_total|b_total"}[5m]))') == {"a_total", "b_total"}


def test_rendered_tree_is_clean(tree):
    """The rendered output passes every check."""
    assert checks.check_tree(tree) == []


def test_removed_panel_type_is_reported(tree):
    """A `graph` panel (removed in Grafana 12) is reported."""
    path = _edit_dashboard(tree, lambda d: _first_target_panel(d).update(type="graph"))
    assert f"{path}: panel 'mTLS coverage': panel type 'graph' was removed from Grafana" in checks.check_tree(tree)


def test_duplicate_panel_id_is_reported(tree):
    """Two panels with one id are reported."""
    def edit(data):
        data["panels"][2]["id"] = data["panels"][1]["id"]
    path = _edit_dashboard(tree, edit)
    problems = checks.check_tree(tree)
    assert any(p.startswith(f"{path}: panel 'Plaintext requests': panel id") for p in problems), problems


def test_overlapping_panels_are_reported(tree):
    """Panels sharing grid cells are reported."""
    def edit(data):
        data["panels"][2]["gridPos"] = dict(data["panels"][1]["gridPos"])
    path = _edit_dashboard(tree, edit)
    assert f"{path}: panel 'Plaintext requests': overlaps panel 'mTLS coverage'" in checks.check_tree(tree)


def test_panel_outside_the_grid_is_reported(tree):
    """A panel wider than the 24-column grid is reported."""
    path = _edit_dashboard(tree, lambda d: _first_target_panel(d)["gridPos"].update(x=20, w=8))
    problems = checks.check_tree(tree)
    assert any(p.startswith(f"{path}: panel 'mTLS coverage': gridPos") and "outside" in p for p in problems), problems


def test_unknown_metric_is_reported(tree):
    """A metric no dialect, recording rule or the exporter defines is reported (the classic rename)."""
    path = _edit_dashboard(tree, lambda d: _first_target_panel(d)["targets"][0].update(
        expr="sum(rate(istio_request_duration_seconds_bucket[$__rate_interval]))"))
    assert f"{path}: panel 'mTLS coverage': unknown metric istio_request_duration_seconds_bucket" in checks.check_tree(tree)


def test_unparsable_query_is_reported(tree):
    """A query PromQL cannot parse is reported with the parser's reason."""
    path = _edit_dashboard(tree, lambda d: _first_target_panel(d)["targets"][0].update(expr="sum(rate(x[5m])"))
    assert f"{path}: panel 'mTLS coverage': PromQL does not parse (unclosed left parenthesis): sum(rate(x[5m])" in checks.check_tree(tree)


def test_fixed_rate_window_in_a_dashboard_is_reported(tree):
    """A dashboard rate over a fixed window instead of $__rate_interval is reported."""
    path = _edit_dashboard(tree, lambda d: _first_target_panel(d)["targets"][0].update(expr="sum(rate(istio_requests_total[1m]))"))
    assert f"{path}: panel 'mTLS coverage': rate over a fixed window; use $__rate_interval: sum(rate(istio_requests_total[1m]))" in checks.check_tree(tree)


def test_missing_cluster_variable_is_reported(tree):
    """Every dashboard needs a cluster variable."""
    path = _edit_dashboard(tree, lambda d: d["templating"].update(list=[v for v in d["templating"]["list"] if v["name"] != "cluster"]))
    assert f"{path}: no cluster variable" in checks.check_tree(tree)


def test_old_schema_version_is_reported(tree):
    """grafanalib's schemaVersion 12 would be reported."""
    path = _edit_dashboard(tree, lambda d: d.update(schemaVersion=12))
    assert f"{path}: schemaVersion 12 is older than 39" in checks.check_tree(tree)


def test_alert_without_runbook_is_reported(tree):
    """An alert missing its runbook_url annotation is reported."""
    path = tree / "alerts/istio/alerting-rules.yaml"
    path.write_text(path.read_text().replace("runbook_url:", "runbook:", 1))
    assert f"{path}: group 'meshobs-istio-alerts': MeshHighErrorRate: alert has no runbook_url annotation" in checks.check_tree(tree)


def test_broken_json_is_reported_not_raised(tree):
    """A file that is not JSON is a problem, not a crash."""
    path = tree / "dashboards/istio/overview.json"
    path.write_text("{")
    assert any(p.startswith(f"{path}: cannot be read as JSON") for p in checks.check_tree(tree))


def test_undefined_variable_is_reported(tree):
    """A matcher using a variable the dashboard does not define is reported (it would match nothing)."""
    path = _edit_dashboard(tree, lambda d: _first_target_panel(d)["targets"][0].update(
        expr='sum(x{quantile=~"$0.99", namespace=~"$namespace", a=~"${service}"})'))
    problems = checks.check_tree(tree)
    assert f'{path}: panel \'mTLS coverage\': uses undefined variable $0: sum(x{{quantile=~"$0.99", namespace=~"$namespace", a=~"${{service}}"}})' in problems
    assert not any("undefined variable $namespace" in p for p in problems)
    assert any("undefined variable $service" in p for p in problems)
