"""`meshobs build`: complete, deterministic, atomic output and an honest `--check`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from meshobs import build, config, signals, writer
from meshobs.errors import BuildError
from meshobs.meshes import DIALECTS
from meshobs.render.rules import ALERT_NAMES
from meshobs.render.rules_ambient import ALERT_NAMES as AMBIENT_ALERT_NAMES
from meshobs.render.rules_crosscluster import ALERT_NAMES as CROSS_CLUSTER_ALERT_NAMES
from meshobs.render.rules_health import ALERT_NAMES as HEALTH_ALERT_NAMES


def meshobs(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshobs", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    result = meshobs("build", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_version_and_help():
    """`meshobs --version` and `--help` work."""
    assert meshobs("--version").stdout.startswith("meshobs ")
    assert "build" in meshobs("--help").stdout


@pytest.mark.parametrize("mesh", ["istio", "linkerd", "consul"])
def test_each_mesh_gets_six_dashboards_and_rule_files(rendered, mesh):
    """Every mesh has the overview, service, workload, security, control-plane, proxy and clusters dashboards and two rule files; Istio also its ambient data planes' ztunnel and waypoint dashboards."""
    dashboards = sorted(p.name for p in (rendered / "dashboards" / mesh).glob("*.json"))
    ambient = ["waypoint.json", "ztunnel.json"] if mesh == "istio" else []
    assert dashboards == sorted(["clusters.json", "control-plane.json", "overview.json", "proxy.json", "security.json",
                                 "service.json", "workload.json"] + ambient)
    assert sorted(p.name for p in (rendered / "alerts" / mesh).glob("*.yaml")) == ["alerting-rules.yaml", "recording-rules.yaml"]


def test_promtool_accepts_every_rule_file(rendered):
    """The real promtool checks every rendered rule file."""
    from tests.support.procs import require_binary

    files = sorted(str(p) for p in rendered.glob("alerts/*/*.yaml"))
    result = subprocess.run([require_binary("promtool"), "check", "rules", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_mesh_has_every_alert(rendered):
    """The same alert names exist for every mesh, each with severity and mesh labels."""
    import yaml

    for mesh in ("istio", "linkerd", "consul"):
        rules = yaml.safe_load((rendered / "alerts" / mesh / "alerting-rules.yaml").read_text())["groups"][0]["rules"]
        dry_run = signals.DRY_RUN_DENIED.available(DIALECTS[mesh])  # only where the proxy reports dry-run decisions
        expected = set(ALERT_NAMES) - (set() if dry_run else {"MeshPolicyDryRunDenials"})
        others = set(HEALTH_ALERT_NAMES) | set(AMBIENT_ALERT_NAMES) | set(CROSS_CLUSTER_ALERT_NAMES)
        assert {r["alert"] for r in rules} - others == expected
        assert all(r["labels"]["mesh"] == mesh and r["labels"]["severity"] for r in rules)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _checked(root: Path) -> str:
    """What `meshobs check` says it checked in `root`, counted here from the files."""
    boards = sorted(root.glob("dashboards/*/*.json"))
    # a collapsed row carries its panels inside it
    panels = sum(1 for b in boards for row in json.loads(b.read_text())["panels"]
                 for p in [row] + row.get("panels", []) if p["type"] != "row")
    rule_files = sorted(root.glob("alerts/*/*.yaml")) + sorted(root.glob("alerts/*/global/*.yaml"))
    rules = sum(len(g["rules"]) for f in rule_files for g in yaml.safe_load(f.read_text())["groups"])
    return f"{len(boards)} dashboards, {panels} panels, {len(rule_files)} rule files, {rules} rules"


def test_static_checks_pass_on_rendered_output(rendered):
    """`meshobs check` finds no problem in what `meshobs build` renders and says what it checked."""
    result = meshobs("check", str(rendered))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{_checked(rendered)}: ok\n", "")


def test_verbose_flag_is_accepted_after_the_subcommand(tmp_path):
    """`meshobs build -v` and `meshobs -v build` both log debug lines (here: each file removed)."""
    assert meshobs("build", "--out", str(tmp_path)).returncode == 0
    after = meshobs("build", "-v", "--out", str(tmp_path), "--mesh", "consul")
    assert after.returncode == 0
    assert "meshobs build: debug: removed dashboards/istio/overview.json: no longer rendered" in after.stderr.splitlines()
    before = meshobs("-v", "build", "--out", str(tmp_path), "--mesh", "istio")
    assert "meshobs build: debug: removed dashboards/consul/overview.json: no longer rendered" in before.stderr.splitlines()


def test_rebuild_is_byte_identical():
    """Two renders of the same config are byte for byte the same."""
    cfg = config.Config()
    assert build.render(cfg, build.select_meshes(None)) == build.render(cfg, build.select_meshes(None))


def test_dashboards_are_modern_and_linked(rendered):
    """Dashboards use schemaVersion 39+, stable uids, and link to their mesh's other dashboards."""
    for path in rendered.glob("dashboards/*/*.json"):
        data = json.loads(path.read_text())
        mesh = path.parent.name
        assert data["schemaVersion"] >= 39
        assert data["uid"] == f"meshobs-{mesh}-{path.stem}"
        assert data["links"][0]["tags"] == [f"meshobs-{mesh}"]
        assert f"meshobs-{mesh}" in data["tags"]


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
def test_security_edges_follow_the_namespace_variable_only_where_they_name_kubernetes_namespaces(rendered, mesh):
    """The security dashboard's 403 edge panels filter by $namespace (a workload's Kubernetes namespace) only for a mesh whose edges name that namespace; Consul's name the Consul one."""
    data = json.loads((rendered / f"dashboards/{mesh}/security.json").read_text())
    edges = [p for p in data["panels"] if p["title"] in ("403 responses by source and destination", "Denied pairs")]
    assert len(edges) == 2
    filtered = {"$namespace" in p["targets"][0]["expr"] for p in edges}
    assert filtered == {DIALECTS[mesh].edges_in_workload_namespaces}
    if mesh == "consul":
        assert all("not the Kubernetes namespace the Namespace variable lists" in p["description"] for p in edges)


def test_check_reports_every_differing_file(rendered, tmp_path):
    """`--check` writes nothing, exits 1 and lists each file as missing, changed or stale, with the counts."""
    out = tmp_path / "copy"
    assert meshobs("build", "--out", str(out)).returncode == 0
    (out / "dashboards/istio/overview.json").write_text("{}")
    (out / "alerts/linkerd/alerting-rules.yaml").unlink()
    (out / "alerts/consul/old.yaml").write_text("groups: []\n")
    result = meshobs("build", "--out", str(out), "--check")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "stale: alerts/consul/old.yaml",
        "missing: alerts/linkerd/alerting-rules.yaml",
        "changed: dashboards/istio/overview.json",
    ]
    assert result.stderr == (
        "3 file(s) differ from what meshobs 0.1.0 renders (1 missing, 1 changed, 1 stale); "
        f"`meshobs build --out {out}` writes them and removes the stale ones\n")
    assert (out / "dashboards/istio/overview.json").read_text() == "{}"
    assert meshobs("build", "--out", str(out)).returncode == 0
    assert meshobs("build", "--out", str(out), "--check").returncode == 0
    assert not (out / "alerts/consul/old.yaml").exists()


def test_failed_build_leaves_previous_output_untouched(tmp_path):
    """A write that fails half way leaves every existing file as it was and no staging folder."""
    out = tmp_path / "out"
    writer.write({"a/one.txt": b"old", "a/two.txt": b"old"}, out)
    with pytest.raises(BuildError):
        writer.write({"a/one.txt": b"new", "../escape.txt": b"x"}, out)
    assert (out / "a/one.txt").read_bytes() == b"old"
    assert sorted(p.name for p in out.iterdir()) == ["a"]


def test_unknown_mesh_is_an_error(tmp_path):
    """`--mesh` names only known meshes, and suggests the one meant."""
    result = meshobs("build", "--mesh", "kuma", "--out", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == "meshobs build: error: unknown mesh 'kuma' (known: istio, linkerd, consul)\n"
    result = meshobs("build", "--mesh", "Linkerd", "--out", str(tmp_path))
    assert (result.returncode, result.stderr) == (
        1, "meshobs build: error: unknown mesh 'Linkerd' (known: istio, linkerd, consul); did you mean linkerd?\n")


def test_single_mesh_build_leaves_other_meshes_alone(tmp_path):
    """`--mesh istio` into an empty folder renders only Istio's folders."""
    assert meshobs("build", "--out", str(tmp_path), "--mesh", "istio").returncode == 0
    assert sorted(p.name for p in (tmp_path / "dashboards").iterdir()) == ["istio"]


def test_one_mesh_build_over_an_all_mesh_build_removes_the_other_meshes(tmp_path):
    """`build --mesh consul` over an all-mesh build: --check lists the other meshes' files as stale,
    the build removes them (folders too), and --check then passes."""
    assert meshobs("build", "--out", str(tmp_path)).returncode == 0
    before = _files(tmp_path)
    consul = build.render(config.Config(), build.select_meshes(["consul"]))
    stale = sorted(set(before) - set(consul))
    changed = sorted(p for p in consul if p in before and before[p] != consul[p])
    check = meshobs("build", "--out", str(tmp_path), "--mesh", "consul", "--check")
    assert check.returncode == 1
    assert check.stdout.splitlines() == sorted(
        [f"stale: {p}" for p in stale] + [f"changed: {p}" for p in changed], key=lambda line: line.split(": ")[1])
    assert "stale: dashboards/istio/overview.json" in check.stdout.splitlines()
    assert check.stderr == (
        f"{len(stale) + len(changed)} file(s) differ from what meshobs 0.1.0 renders ({len(changed)} changed, "
        f"{len(stale)} stale); `meshobs build --out {tmp_path}` writes them and removes the stale ones\n")
    result = meshobs("build", "--out", str(tmp_path), "--mesh", "consul")
    assert (result.returncode, result.stdout) == (
        0, f"{len(consul)} file(s) rendered, {len(changed)} changed, {len(stale)} removed, in {tmp_path}\n")
    assert _files(tmp_path) == consul
    assert sorted(p.name for p in (tmp_path / "dashboards").iterdir()) == ["consul"]
    assert sorted(p.name for p in (tmp_path / "deploy/grafana/dashboards").iterdir()) == ["consul"]
    assert meshobs("build", "--out", str(tmp_path), "--mesh", "consul", "--check").returncode == 0


def test_check_tells_a_missing_folder_from_an_empty_one(tmp_path):
    """A folder that does not exist and one with nothing built in it get different messages, exit 1."""
    missing = meshobs("check", str(tmp_path / "out"))
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        1, f"{tmp_path / 'out'}: no such folder; run `meshobs build --out {tmp_path / 'out'}` first\n",
        "nothing checked: 1 problem(s)\n")
    empty = meshobs("check", str(tmp_path))
    assert (empty.returncode, empty.stdout) == (
        1, f"{tmp_path}: no dashboards/<mesh>/ or alerts/<mesh>/ folders in it; run `meshobs build --out {tmp_path}`\n")
    (tmp_path / "alerts/istio").mkdir(parents=True)
    (tmp_path / "dashboards/istio").mkdir(parents=True)
    (tmp_path / "dashboards/istio/notes.txt").write_text("")
    partial = meshobs("check", str(tmp_path))
    assert partial.stdout.splitlines() == [f"{tmp_path}/alerts/istio: is empty",
                                           f"{tmp_path}/dashboards/istio: has no *.json dashboards"]


def test_check_warns_about_meshes_and_files_the_last_build_did_not_write(tmp_path):
    """A mesh folder copied in after `build --mesh consul` is reported stale and not checked; an
    edited file is reported as changed since the last build."""
    out, everything = tmp_path / "out", tmp_path / "all"
    assert meshobs("build", "--out", str(out), "--mesh", "consul").returncode == 0
    expected = _checked(out)
    assert meshobs("build", "--out", str(everything)).returncode == 0
    (everything / "dashboards/istio").rename(out / "dashboards/istio")
    rules = out / "alerts/consul/alerting-rules.yaml"
    rules.write_text(rules.read_text().replace("for: 5m", "for: 6m", 1))
    result = meshobs("check", str(out))
    assert (result.returncode, result.stdout) == (0, f"{expected}: ok\n")
    assert result.stderr == (
        f"meshobs check: warning: {out}: dashboards/istio/ not written by the last build (meshobs build "
        "--mesh consul, meshobs-build.json): stale, not checked; rebuild with that mesh or remove the folders\n"
        f"meshobs check: warning: {rules}: changed since the last build\n")
