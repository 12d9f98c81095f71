"""`meshobs-build.json`: what the last `meshobs build` wrote into a folder.

The build writes it with the other artefacts: the meshes built and a digest of every file. `check`
and `verify` read it to tell the user when a folder holds a mesh the last build did not render, or
a file changed since, instead of judging stale files as if they were current.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from meshobs.config import Config

# A manifest written before the label was configurable was built with the default one
_DEFAULT_CLUSTER_LABEL = Config().cluster_label

NAME = "meshobs-build.json"
PER_MESH_DIRS = ("dashboards", "alerts", "collectors")


def render(artefacts: Mapping[str, bytes], meshes: list[str], version: str, cluster_label: str,
           ruler_kind: str) -> bytes:
    files = {path: hashlib.sha256(content).hexdigest() for path, content in sorted(artefacts.items())}
    # the ruler kind tells `check` which group fields deploy/ruler/rules/ may have
    document = {"built_by": f"meshobs {version}", "meshes": meshes, "cluster_label": cluster_label,
                "ruler_kind": ruler_kind, "files": files}
    return (json.dumps(document, indent=2) + "\n").encode()


@dataclass(frozen=True)
class Manifest:
    meshes: tuple[str, ...]
    files: dict[str, str]
    cluster_label: str = _DEFAULT_CLUSTER_LABEL
    ruler_kind: str | None = None  # None: written before meshobs recorded it

    def command(self) -> str:
        """The build command that wrote it, as a user would type it."""
        from meshobs.meshes import DIALECTS

        if set(self.meshes) == set(DIALECTS):
            return "meshobs build"
        return "meshobs build " + " ".join(f"--mesh {mesh}" for mesh in self.meshes)


def read(root: Path) -> Manifest | None:
    """The folder's manifest; None when there is none or it cannot be read (then nothing is known)."""
    try:
        document = json.loads((root / NAME).read_text())
        return Manifest(tuple(document["meshes"]), dict(document["files"]),
                        str(document.get("cluster_label", _DEFAULT_CLUSTER_LABEL)), document.get("ruler_kind"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mesh_folders(root: Path) -> dict[str, list[str]]:
    """Mesh name -> the per-mesh folders (`dashboards/istio`...) present under `root`."""
    found: dict[str, list[str]] = {}
    for kind in PER_MESH_DIRS:
        for path in sorted((root / kind).glob("*")):
            if path.is_dir():
                found.setdefault(path.name, []).append(f"{kind}/{path.name}/")
    return dict(sorted(found.items()))


def warnings(root: Path, skipped: str = "not checked") -> tuple[list[str], set[str]]:
    """(what to tell the user, meshes not from the last build) for the folder `root`; `skipped`
    says what the caller does not do with those meshes."""
    manifest = read(root)
    if manifest is None:
        return [], set()
    notes, stray = [], set()
    for mesh, folders in mesh_folders(root).items():
        if mesh not in manifest.meshes:
            stray.add(mesh)
            notes.append(f"{root}: {', '.join(folders)} not written by the last build ({manifest.command()}, "
                         f"{NAME}): stale, {skipped}; rebuild with that mesh or remove the folders")
    for path, digest in sorted(manifest.files.items()):
        target = root / path
        if not target.is_file():
            notes.append(f"{target}: missing (written by the last build)")
        elif hashlib.sha256(target.read_bytes()).hexdigest() != digest:
            notes.append(f"{target}: changed since the last build")
    return notes, stray
