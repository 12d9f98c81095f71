"""Collectors render byte-identically, whatever the process's hash seed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from meshobs.config import Config
from meshobs.meshes import DIALECTS
from meshobs.render import collectors
from tests.collectors.conftest import MESHES

DIGEST = """
import hashlib
from meshobs.config import Config
from meshobs.meshes import DIALECTS
from meshobs.render import collectors
for mesh in ("istio", "linkerd", "consul"):
    for path, data in sorted(collectors.render(Config(), DIALECTS[mesh]).items()):
        print(path, hashlib.sha256(data).hexdigest())
"""


def test_two_processes_with_different_hash_seeds_render_the_same_bytes():
    """Every collectors file has the same digest in two interpreters with different PYTHONHASHSEED."""
    outputs = [
        subprocess.run([sys.executable, "-c", DIGEST], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    ]
    assert outputs[0] == outputs[1]
    expected = "".join(
        f"{path} {hashlib.sha256(data).hexdigest()}\n"
        for mesh in MESHES for path, data in sorted(collectors.render(Config(), DIALECTS[mesh]).items())
    )
    assert outputs[0] == expected


def test_every_path_is_under_collectors_of_its_mesh():
    """Each mesh's files live under collectors/<mesh>/ and nowhere else."""
    for mesh in MESHES:
        assert all(path.startswith(f"collectors/{mesh}/") for path in collectors.render(Config(), DIALECTS[mesh]))
