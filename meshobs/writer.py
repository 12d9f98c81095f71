"""The only code that touches the output folder.

Everything is rendered in memory first into an artefact set (relative path -> bytes). `write`
then stages the whole set in a temporary folder beside the output and moves files into place
only once all of them exist, so a failed build never leaves half-written output. `diff` lists
what `write` would change, for `meshobs build --check`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Mapping

from meshobs.errors import BuildError

Artefacts = Mapping[str, bytes]


def _checked_path(relative: str) -> PurePosixPath:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise BuildError(f"artefact path {relative!r} must be relative and stay inside the output folder")
    return path


def diff(artefacts: Artefacts, out: Path) -> list[str]:
    """Paths (relative, sorted) whose content on disk differs from the artefact or is missing."""
    changed = []
    for relative in sorted(artefacts):
        target = out / _checked_path(relative)
        try:
            if target.read_bytes() == artefacts[relative]:
                continue
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            pass
        changed.append(relative)
    return changed


def stale(artefacts: Artefacts, out: Path, owned_dirs: tuple[str, ...]) -> list[str]:
    """Files under the folders meshobs owns that the build would no longer produce."""
    found = []
    for owned in owned_dirs:
        root = out / owned
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if path.is_file():
                relative = path.relative_to(out).as_posix()
                if relative not in artefacts:
                    found.append(relative)
    return sorted(found)


def write(artefacts: Artefacts, out: Path, owned_dirs: tuple[str, ...] = ()) -> list[str]:
    """Write the artefacts under `out`; return the paths that changed.

    Files are staged in a sibling temporary folder and renamed into place, so an error while
    staging leaves `out` untouched. Files under `owned_dirs` that are no longer rendered are
    removed, so renamed dashboards do not linger.
    """
    out.mkdir(parents=True, exist_ok=True)
    changed = diff(artefacts, out)
    removed = stale(artefacts, out, owned_dirs)
    if not changed and not removed:
        return []
    staging = Path(tempfile.mkdtemp(prefix=".meshobs-staging-", dir=out))
    try:
        for relative in changed:
            staged = staging / _checked_path(relative)
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(artefacts[relative])
        for relative in changed:
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / relative, target)
        for relative in removed:
            (out / relative).unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return changed + removed
