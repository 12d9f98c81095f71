"""The `ruler:` settings: group fields rendered into deploy/ruler/rules/ only, per ruler kind —
read by the real vmalert (dry run, and evaluating them on VictoriaMetrics) for kind
victoriametrics, and for the other kinds checked against the field table, with the files minus
those fields passing the real promtool 2.42; refused combinations with their exact messages."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from meshobs import build, checks, config, ruler_fields, writer, yamlfmt
from meshobs.errors import ConfigError
from meshobs.meshes import DIALECTS
from tests.rules.test_global_rules import _two_clusters
from tests.rules.traffic import CLUSTER
from tests.support import promtool_file
from tests.support.procs import require_binary
from tests.support.victoria import replay_rules, start_victoria_metrics

T0 = (int(time.time()) // 3600 - 24) * 3600
RULER_LABEL = {"ruler": "global"}
# a non-default configuration per kind: every field the kind reads
SETTINGS = {
    "prometheus": {"query_offset": "1m", "group_labels": RULER_LABEL},
    "thanos": {"query_offset": "1m", "partial_response_strategy": "warn", "group_labels": RULER_LABEL},
    "mimir": {"query_offset": "2m", "source_tenants": ["eu-1", "us-1"], "group_labels": RULER_LABEL},
    "victoriametrics": {"group_labels": RULER_LABEL},
}


def _render(tmp_path: Path, data: dict) -> Path:
    """`meshobs build` of the config `data` into `tmp_path`, manifest included."""
    out = tmp_path / "out"
    writer.write(build.render(config.from_dict(data), DIALECTS.values()), out)
    return out


def _ruler_files(out: Path) -> list[Path]:
    return sorted((out / "deploy/ruler/rules").glob("*.yaml"))


def _source(out: Path, ruler_file: Path) -> Path:
    """The alerts/ file a deploy/ruler file was made from (`<mesh>-<name>.yaml`)."""
    mesh, _, name = ruler_file.name.partition("-")
    plain = out / "alerts" / mesh / name
    return plain if plain.exists() else out / "alerts" / mesh / "global" / name


def _config_error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        config.from_dict(data)
    return str(info.value)


@pytest.fixture(scope="module")
def default_build(tmp_path_factory) -> Path:
    return _render(tmp_path_factory.mktemp("default"), {})


def test_default_renders_the_rule_files_unchanged(default_build):
    """With no `ruler:` settings every deploy/ruler file is its alerts/ file byte for byte, and the manifest records kind prometheus."""
    files = _ruler_files(default_build)
    assert len(files) == 3 * len(DIALECTS)
    assert all(path.read_bytes() == _source(default_build, path).read_bytes() for path in files)
    assert json.loads((default_build / "meshobs-build.json").read_text())["ruler_kind"] == "prometheus"


@pytest.mark.parametrize("kind", ["prometheus", "thanos", "mimir"])
def test_group_keys_are_the_configured_ones_and_promtool_reads_the_rest(kind, default_build, tmp_path):
    """Every group of every deploy/ruler file has exactly name, the configured fields in table order, and rules; without those fields it is its alerts/ file, which promtool 2.42 accepts, while it refuses the file as rendered."""
    out = _render(tmp_path, {"ruler": {"kind": kind, **SETTINGS[kind]}})
    expected = {"query_offset": SETTINGS[kind].get("query_offset"),
                "partial_response_strategy": SETTINGS[kind].get("partial_response_strategy"),
                "source_tenants": SETTINGS[kind].get("source_tenants"),
                "labels": RULER_LABEL}
    expected = {key: value for key, value in expected.items() if value is not None}
    stripped_dir = tmp_path / "stripped"
    stripped_dir.mkdir()
    for path in _ruler_files(out):
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            assert list(group) == ["name", *expected, "rules"], (path.name, group["name"])
            assert {key: group[key] for key in expected} == expected
        source = _source(out, path).read_text()
        header = source.partition("groups:")[0]
        assert path.read_text().startswith(
            f"{header}# For ruler.kind {kind}: each group has {', '.join(expected)} (meshobs/ruler_fields.py); the "
            "same rules without them are under alerts/.\ngroups:\n")
        stripped = header + yamlfmt.dump(ruler_fields.without_fields(document))
        assert stripped == source, path.name
        (stripped_dir / path.name).write_text(stripped)
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "rules", *map(str, sorted(stripped_dir.iterdir()))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    raw = subprocess.run([promtool, "check", "rules", str(out / "deploy/ruler/rules/istio-global-rules.yaml")],
                         capture_output=True, text=True)
    assert raw.returncode == 1 and f"field {next(iter(expected))} not found in type rulefmt.RuleGroup" in raw.stdout + raw.stderr


@pytest.mark.parametrize("kind", sorted(SETTINGS))
def test_per_cluster_files_stay_byte_identical(kind, default_build, tmp_path):
    """Only deploy/ruler/rules/ (and the manifest) change: alerts/, deploy/prometheus, the operator's PrometheusRules and everything else render as with the defaults."""
    out = _render(tmp_path, {"ruler": {"kind": kind, **SETTINGS[kind]}})
    changed = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                     and p.read_bytes() != (default_build / p.relative_to(out)).read_bytes())
    assert changed == sorted(["meshobs-build.json"] + [f"deploy/ruler/rules/{p.name}" for p in _ruler_files(out)])


def test_meshobs_check_accepts_the_fields_of_the_built_kind_and_names_the_others(tmp_path):
    """`meshobs check` passes a Thanos build; told the build was for Mimir, or given a field no ruler reads, it names file, group and field."""
    out = _render(tmp_path, {"ruler": {"kind": "thanos", **SETTINGS["thanos"]}})
    assert checks.check_tree(out) == []
    result = subprocess.run([sys.executable, "-m", "meshobs", "check", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = out / "meshobs-build.json"
    manifest.write_text(manifest.read_text().replace('"ruler_kind": "thanos"', '"ruler_kind": "mimir"'))
    problems = checks.check_ruler_rules(out)
    path = out / "deploy/ruler/rules/istio-global-rules.yaml"
    assert f"{path}: group 'meshobs-istio-global': field 'partial_response_strategy' is not read by the Mimir ruler " \
           "(ruler.kind: mimir): only Thanos Ruler reads the group field partial_response_strategy" in problems
    assert len(problems) == sum(len(yaml.safe_load(p.read_text())["groups"]) for p in _ruler_files(out))
    path.write_text(path.read_text().replace("    query_offset: 1m\n", "    eval_offset: 1m\n"))
    assert f"{path}: group 'meshobs-istio-global': field 'eval_offset' is not a rule group field of any ruler " \
           "meshobs knows (prometheus, thanos, mimir, victoriametrics)" in checks.check_ruler_rules(out)
    # without a manifest the kind is unknown: the fields of one group must still be read by one ruler
    manifest.unlink()
    path.write_text(path.read_text().replace("    eval_offset: 1m\n", "    source_tenants:\n      - eu-1\n"))
    assert checks.check_ruler_rules(out) == [
        f"{path}: group 'meshobs-istio-global': fields 'source_tenants', 'partial_response_strategy', 'labels': "
        "no one ruler reads them all"]


def test_meshobs_check_judges_hand_edited_group_values(tmp_path):
    """`meshobs check` judges a ruler group's values as `ruler:` would: a bad offset, the cluster label as a group label, and a group label the group's rules set themselves."""
    out = _render(tmp_path, {"ruler": {"kind": "thanos", **SETTINGS["thanos"]}})
    rules = out / "deploy/ruler/rules"
    (rules / "istio-global-rules.yaml").write_text((rules / "istio-global-rules.yaml").read_text().replace(
        "query_offset: 1m", "query_offset: soon").replace("ruler: global", "cluster: x"))
    (rules / "istio-alerting-rules.yaml").write_text((rules / "istio-alerting-rules.yaml").read_text().replace(
        "      ruler: global\n", "      severity: page\n", 1))
    alerting = yaml.safe_load((rules / "istio-alerting-rules.yaml").read_text())["groups"][0]
    assert checks.check_ruler_rules(out) == [
        f"{rules / 'istio-alerting-rules.yaml'}: group 'meshobs-istio-alerts': group label 'severity' is set by "
        f"{len(alerting['rules'])} of its rules too (first {alerting['rules'][0]['alert']}), whose own value wins in "
        "every ruler",
        f"{rules / 'istio-global-rules.yaml'}: group 'meshobs-istio-global': field 'query_offset': 'soon' is not a "
        "Prometheus duration such as 30s, 5m, 1h or 7d",
        f"{rules / 'istio-global-rules.yaml'}: group 'meshobs-istio-global': field 'labels': cluster is the cluster "
        "label (cluster_label): every series the ruler records, per-cluster ones included, would carry cluster='x', "
        "and every global series would land in that fake cluster; name the ruler with another label, e.g. ruler: "
        "global",
    ]


def test_vmalert_reads_every_field_the_table_gives_it_and_refuses_the_others(tmp_path):
    """The real vmalert 1.79.5 (`-dryRun`) accepts each group field the table lists for victoriametrics and refuses every other one, naming it."""
    vmalert = require_binary("vmalert")
    samples = {"query_offset": "1m", "partial_response_strategy": "warn", "source_tenants": ["eu-1"], "labels": RULER_LABEL}
    assert set(samples) == set(ruler_fields.BY_KEY)
    for field in ruler_fields.FIELDS:
        path = tmp_path / f"{field.key}.yaml"
        path.write_text(yamlfmt.dump({"groups": [
            {"name": "g", field.key: samples[field.key], "rules": [{"record": "r:up", "expr": "sum(up)"}]}]}))
        result = subprocess.run([vmalert, f"-rule={path}", "-dryRun", "-loggerLevel=WARN"], capture_output=True, text=True)
        if "victoriametrics" in field.kinds:
            assert result.returncode == 0, result.stdout + result.stderr
        else:
            assert result.returncode != 0 and f'unknown fields in group "g": {field.key}' in result.stderr


def test_vmalert_loads_the_rendered_files_and_records_with_the_group_label(processes, tmp_path):
    """For kind victoriametrics, vmalert -dryRun accepts every rendered deploy/ruler file, and evaluating Istio's recordings, roll-ups and alerts on VictoriaMetrics writes series and alerts that all carry ruler="global"."""
    out = _render(tmp_path, {"ruler": {"kind": "victoriametrics", **SETTINGS["victoriametrics"]}})
    files = _ruler_files(out)
    result = subprocess.run([require_binary("vmalert"), *[f"-rule={p}" for p in files], "-dryRun", "-loggerLevel=WARN"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    vm = start_victoria_metrics(processes, tmp_path)
    [case] = promtool_file.read({"tests": [{"interval": "1m", "input_series": _two_clusters("istio")}]})
    vm.import_series(case.samples(), base=T0)
    rules = [out / "deploy/ruler/rules/istio-recording-rules.yaml", out / "deploy/ruler/rules/istio-global-rules.yaml",
             out / "deploy/ruler/rules/istio-alerting-rules.yaml"]
    replay_rules(vm, rules, tmp_path, start=T0, end=T0 + 15 * 60, interval="1m")
    at = T0 + 15 * 60
    per_cluster = vm.query('destination_service:mesh_requests:rate5m{mesh="istio"}', at)
    rolled_up = vm.query('global_destination_service:mesh_requests:rate5m{mesh="istio"}', at)
    assert sorted((s["metric"]["cluster"], s["metric"]["ruler"]) for s in per_cluster) == [
        (CLUSTER, "global"), ("c2", "global")]
    assert [(s["metric"]["ruler"], float(s["value"][1])) for s in rolled_up] == [("global", 40.0)]
    # c2 fails every request: its error-rate alert fires, with the ruler's label as well
    assert [(labels["cluster"], labels["ruler"]) for labels in vm.firing_at("MeshHighErrorRate", at)] == [("c2", "global")]
    recorded = vm.query('count({__name__=~".+:.+"})', at)
    labelled = vm.query('count({__name__=~".+:.+", ruler="global"})', at)
    assert float(recorded[0]["value"][1]) == float(labelled[0]["value"][1]) > 2


@pytest.mark.parametrize("data, message", [
    ({"ruler": {"kind": "victoriametrics", "query_offset": "1m"}},
     "ruler.query_offset: '1m' cannot be set for ruler.kind victoriametrics: vmalert 1.79 has no per-group query "
     "offset; set its -datasource.lookback flag (VictoriaMetrics already hides samples newer than "
     "-search.latencyOffset, 30s)"),
    ({"ruler": {"partial_response_strategy": "warn"}},
     "ruler.partial_response_strategy: 'warn' cannot be set for ruler.kind prometheus: only Thanos Ruler reads the "
     "group field partial_response_strategy"),
    ({"ruler": {"kind": "mimir", "partial_response_strategy": "abort"}},
     "ruler.partial_response_strategy: 'abort' cannot be set for ruler.kind mimir: only Thanos Ruler reads the group "
     "field partial_response_strategy"),
    ({"ruler": {"kind": "victoriametrics", "partial_response_strategy": "warn"}},
     "ruler.partial_response_strategy: 'warn' cannot be set for ruler.kind victoriametrics: only Thanos Ruler reads "
     "the group field partial_response_strategy"),
    ({"ruler": {"group_labels": {"cluster": "global"}}},
     "ruler.group_labels.cluster: cluster is the cluster label (cluster_label): every series the ruler records, "
     "per-cluster ones included, would carry cluster='global', and every global series would land in that fake "
     "cluster; name the ruler with another label, e.g. ruler: global"),
    ({"cluster_label": "region", "ruler": {"kind": "thanos", "group_labels": {"region": "all"}}},
     "ruler.group_labels.region: region is the cluster label (cluster_label): every series the ruler records, "
     "per-cluster ones included, would carry region='all', and every global series would land in that fake "
     "cluster; name the ruler with another label, e.g. ruler: global"),
    ({"ruler": {"kind": "thanos", "source_tenants": ["eu-1"]}},
     "ruler.source_tenants: ['eu-1'] cannot be set for ruler.kind thanos: only the Mimir ruler reads the group field "
     "source_tenants"),
    ({"ruler": {"kind": "mimir", "source_tenants": ["eu-1|us-1"]}},
     "ruler.source_tenants: ['eu-1|us-1'] has 'eu-1|us-1', which is not a Mimir tenant ID (letters, digits and "
     "!-_.*'(), at most 150)"),
    ({"ruler": {"kind": "cortex"}},
     "ruler.kind: 'cortex' must be one of prometheus, thanos, mimir, victoriametrics"),
    ({"ruler": {"kind": "thanos", "partial_response_strategy": "ignore"}},
     "ruler.partial_response_strategy: 'ignore' must be abort or warn (or empty: not rendered; Thanos aborts)"),
    ({"ruler": {"query_offset": "soon"}},
     "ruler.query_offset: 'soon' is not a Prometheus duration such as 30s, 5m, 1h or 7d"),
    ({"ruler": {"group_labels": {"__tenant": "a"}}},
     "ruler.group_labels: {'__tenant': 'a'} has '__tenant', which must be a Prometheus label name not starting "
     "with '__'"),
    ({"ruler": {"group_labels": {"ruler": ""}}},
     "ruler.group_labels: {'ruler': ''} has ruler: '', which must be letters, digits, '.', '_' or '-' (not empty: "
     "an empty value removes the label)"),
    ({"ruler": {"group_labels": {"ruler": 1}}}, "ruler.group_labels.ruler: expected a string, got int 1"),
    ({"ruler": {"group_labels": ["ruler"]}}, "ruler.group_labels: expected a mapping, got list ['ruler']"),
])
def test_refused_settings_say_why(data, message):
    """Each refused `ruler:` setting or combination fails with its exact message, naming the key."""
    assert _config_error(data) == message


def test_a_group_label_a_rule_sets_itself_is_refused_at_build():
    """A group label named like a label the rendered rules set themselves (severity) fails the build, naming the file, group and rule."""
    with pytest.raises(ConfigError) as info:
        build.render(config.from_dict({"ruler": {"group_labels": {"severity": "page"}}}), [DIALECTS["consul"]])
    assert str(info.value) == (
        "ruler.group_labels.severity: deploy/ruler/rules/consul-alerting-rules.yaml: group 'meshobs-consul-alerts': "
        "MeshHighErrorRate sets its own severity label, which wins over a group label in every ruler: the label would "
        "mean two things; choose another name")


def test_ruler_settings_load_back_and_stay_a_value():
    """A full `ruler:` section written out as `config --validate` prints it loads back equal, and the Config stays hashable and its labels immutable."""
    cfg = config.from_dict({"ruler": {"kind": "mimir", **SETTINGS["mimir"]}})
    assert config.from_dict(yaml.safe_load(config.to_yaml(cfg))) == cfg
    assert hash(cfg) == hash(config.from_dict({"ruler": {"kind": "mimir", **SETTINGS["mimir"]}}))
    with pytest.raises(TypeError, match="^configuration labels cannot change$"):
        cfg.ruler.group_labels["ruler"] = "other"
