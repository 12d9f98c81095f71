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
    return [path for _, path in differences(artefacts, out, [])]


def _difference(content: bytes, target: Path) -> str | None:
    """`missing` (no file), `changed` (other bytes) or None (up to date)."""
    if not target.is_file():
        return "missing"
    return "changed" if target.read_bytes() != content else None


DIFFERENCES = ("missing", "changed", "stale")


def differences(artefacts: Artefacts, out: Path, stale_files: list[str]) -> list[tuple[str, str]]:
    """(missing|changed|stale, path) for every file `write` would touch, sorted by path."""
    found = [(how, relative) for relative in sorted(artefacts)
             if (how := _difference(artefacts[relative], out / _checked_path(relative)))]
    found += [("stale", path) for path in stale_files]
    return sorted(found, key=lambda item: item[1])


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


def _remove_empty_parents(path: Path, out: Path) -> None:
    """Folders left empty by removed files go too: an empty dashboards/istio/ still looks built."""
    for parent in path.parents:
        if parent == out or out not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:  # not empty
            return


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
            _remove_empty_parents(out / relative, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return changed + removed
