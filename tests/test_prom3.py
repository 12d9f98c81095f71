"""Prometheus 3 pitfalls: each is flagged with its exact message, by itself and by `meshobs check`,
and the rendered rules and dashboards have none."""

from __future__ import annotations

import json

import pytest
import yaml

from meshobs import build, checks, config, prom3, writer


@pytest.mark.parametrize("value, form", [
    (1, "1.0"), (0, "0.0"), (0.5, "0.5"), (1000, "1000.0"), (300000, "300000.0"), (1e6, "1e+06"),
    (1234567, "1.234567e+06"), (0.0001, "0.0001"), (0.00001, "1e-05"), (float("inf"), "+Inf"), (-2.5, "-2.5"),
])
def test_float_form_is_prometheus_3s(value, form):
    """Numbers are written as Prometheus 3 normalizes le/quantile values (Go's shortest %g, `.0` appended)."""
    assert prom3.float_form(value) == form


def test_le_value_not_in_float_form():
    """le="1" is flagged (Prometheus 3 stores le="1.0"); float-form and non-numeric values are not."""
    assert prom3.pitfalls('sum(rate(x_bucket{le="1"}[5m]))') == [
        'le="1" is not in the float form Prometheus 3 normalizes le to ("1.0") and stops matching there; '
        'match both forms: le=~"1|1\\\\.0"']
    assert prom3.pitfalls('x_bucket{le=~"0.5|1.0|\\\\+Inf"}') == []
    assert prom3.pitfalls('x{le!~"$bucket"}') == []


def test_quantile_value_not_in_float_form_in_a_negative_regex():
    """Each alternative of a quantile regex is checked; the suggestion keeps the matcher negative."""
    assert prom3.pitfalls('x{quantile!~"0.99|1"}') == [
        'quantile="1" is not in the float form Prometheus 3 normalizes quantile to ("1.0") and stops matching '
        'there; match both forms: quantile!~"1|1\\\\.0"']


def test_regex_reading_lines_with_dots():
    """A regex about lines that uses `.` is flagged in matchers and label_replace; `.` alone, [^\\n] and (?s) are not."""
    assert prom3.pitfalls('label_replace(x, "first", "$1", "msg", "(.*)\\\\n.*")') == [
        'regex "(.*)\\n.*" on label_replace(msg) reads lines with ., which crosses newlines on Prometheus 3: '
        'write [^\\n] where a character of one line is meant']
    assert prom3.pitfalls('x{msg=~"(?m)^a.b$"}') == [
        'regex "(?m)^a.b$" on msg reads lines with ., which crosses newlines on Prometheus 3: '
        'write [^\\n] where a character of one line is meant']
    assert prom3.pitfalls('x{code=~"5..", ns=~".*"}') == []
    assert prom3.pitfalls('x{msg=~"([^\\\\n]*)\\\\n.*"}') != []  # the trailing .* still crosses lines
    assert prom3.pitfalls('x{msg=~"([^\\\\n]*)\\\\n[^\\\\n]*"}') == []
    assert prom3.pitfalls('x{msg=~"(?s)(.*)\\\\n.*"}') == []


def test_subquery_step_equal_to_range():
    """A subquery [10m:10m] is flagged; a finer step is not."""
    assert prom3.pitfalls("max_over_time(rate(x[5m])[1h30m:1h30m])") == [
        "subquery [1h30m:1h30m] has a step equal to its range: Prometheus 3's left-open ranges leave it one point; "
        "use a step smaller than the range"]
    assert prom3.pitfalls("max_over_time(rate(x[5m])[10m:1m])") == []


def test_meshobs_check_reports_pitfalls_in_rules_and_dashboards(tmp_path):
    """`meshobs check` names the file, the rule or panel, and the pitfall; the rendered output has none."""
    writer.write(build.render(config.Config(), build.select_meshes(["istio"])), tmp_path)
    assert checks.check_tree(tmp_path) == []

    rules = tmp_path / "alerts/istio/recording-rules.yaml"
    document = yaml.safe_load(rules.read_text())
    rule = document["groups"][0]["rules"][0]
    rule["expr"] = 'sum(rate(istio_request_duration_milliseconds_bucket{le="100"}[5m]))'
    rules.write_text(yaml.safe_dump(document, sort_keys=False))
    dashboard = tmp_path / "dashboards/istio/overview.json"
    data = json.loads(dashboard.read_text())
    panel = next(p for p in data["panels"] if p.get("targets"))
    panel["targets"][0]["expr"] = "max_over_time(destination_service:mesh_requests:rate5m[5m:5m])"
    dashboard.write_text(json.dumps(data))

    problems = [p for p in checks.check_tree(tmp_path) if "Prometheus 3" in p]
    assert problems == [
        f"{rules}: group {document['groups'][0]['name']!r}: {rule['record']}: Prometheus 3: le=\"100\" is not in the "
        'float form Prometheus 3 normalizes le to ("100.0") and stops matching there; match both forms: '
        'le=~"100|100\\\\.0"',
        f"{dashboard}: panel {panel['title']!r}: Prometheus 3: subquery [5m:5m] has a step equal to its range: "
        "Prometheus 3's left-open ranges leave it one point; use a step smaller than the range",
    ]
