"""`meshobs build`: complete, deterministic, atomic output and an honest `--check`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshobs import build, config, writer
from meshobs.errors import BuildError
from meshobs.render.rules import ALERT_NAMES
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
    """Every mesh has the overview, service, workload, security, control-plane and proxy dashboards and two rule files."""
    dashboards = sorted(p.name for p in (rendered / "dashboards" / mesh).glob("*.json"))
    assert dashboards == ["control-plane.json", "overview.json", "proxy.json", "security.json", "service.json", "workload.json"]
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
        assert {r["alert"] for r in rules} - set(HEALTH_ALERT_NAMES) == set(ALERT_NAMES)
        assert all(r["labels"]["mesh"] == mesh and r["labels"]["severity"] for r in rules)


def test_static_checks_pass_on_rendered_output(rendered):
    """`meshobs check` finds no problem in what `meshobs build` renders."""
    result = meshobs("check", str(rendered))
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stdout


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


def test_check_reports_every_differing_file(rendered, tmp_path):
    """`--check` writes nothing, exits 1 and lists each changed, missing or stale file."""
    out = tmp_path / "copy"
    assert meshobs("build", "--out", str(out)).returncode == 0
    (out / "dashboards/istio/overview.json").write_text("{}")
    (out / "alerts/linkerd/alerting-rules.yaml").unlink()
    (out / "alerts/consul/old.yaml").write_text("groups: []\n")
    result = meshobs("build", "--out", str(out), "--check")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "out of date: alerts/consul/old.yaml",
        "out of date: alerts/linkerd/alerting-rules.yaml",
        "out of date: dashboards/istio/overview.json",
    ]
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
    """`--mesh` names only known meshes."""
    result = meshobs("build", "--mesh", "kuma", "--out", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == "meshobs build: error: unknown mesh 'kuma' (known: istio, linkerd, consul)\n"


def test_single_mesh_build_leaves_other_meshes_alone(tmp_path):
    """`--mesh istio` renders and owns only Istio's folders."""
    assert meshobs("build", "--out", str(tmp_path), "--mesh", "istio").returncode == 0
    assert sorted(p.name for p in (tmp_path / "dashboards").iterdir()) == ["istio"]
