"""deploy/ is byte-identical on rebuild, whatever the hash seed, and only ever under deploy/."""

from __future__ import annotations

import os
import subprocess
import sys

from meshobs import build, config
from meshobs.render import deploy


def test_deploy_renderer_writes_only_under_deploy(artefacts):
    """Every path the deploy renderer returns starts with deploy/, and the build keeps them all."""
    per_mesh = {p: c for p, c in artefacts.items() if not p.startswith("deploy/")}
    files = deploy.render(config.Config(), build.select_meshes(None), per_mesh)
    assert files and all(path.startswith("deploy/") for path in files)
    assert {p: c for p, c in artefacts.items() if p.startswith("deploy/")} == files


def test_rebuilds_in_fresh_processes_with_other_hash_seeds_are_byte_identical(tmp_path, artefacts):
    """Two `meshobs build` runs under different PYTHONHASHSEED values write the same deploy/ bytes."""
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-m", "meshobs", "build", "--out", str(out)], check=True, env=env, capture_output=True)
        outputs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "deploy").rglob("*") if p.is_file()})
    assert outputs[0] == outputs[1] == {p: c for p, c in artefacts.items() if p.startswith("deploy/")}
