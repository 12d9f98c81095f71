"""`meshobs build`: every artefact of every selected mesh, rendered in memory.

Each renderer returns a mapping of relative path -> bytes; nothing here touches the disk
(the writer does). Per-mesh renderers take (config, dialect); the deploy renderer runs last
and takes the per-mesh artefacts too, so it can wrap rule files and dashboards in manifests.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Iterable, Sequence

from meshobs import manifest
from meshobs._version import __version__
from meshobs.config import Config
from meshobs.errors import BuildError, MeshobsError
from meshobs.meshes import DIALECTS, Dialect

# Folders whose whole content the build owns, for every mesh it knows whether built this time or
# not: files there that it no longer renders are removed, so a one-mesh build over an all-mesh one
# leaves no other mesh's dashboards or rules looking current.
_SHARED_DIRS = ("deploy",)


def select_meshes(names: Sequence[str] | None) -> list[Dialect]:
    if not names:
        return list(DIALECTS.values())
    unknown = [n for n in names if n not in DIALECTS]
    if unknown:
        close = difflib.get_close_matches(unknown[0].lower(), list(DIALECTS), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise BuildError(f"unknown mesh {unknown[0]!r} (known: {', '.join(DIALECTS)}){hint}")
    return [DIALECTS[n] for n in dict.fromkeys(names)]


def owned_dirs() -> tuple[str, ...]:
    per_mesh = tuple(f"{kind}/{mesh}" for kind in manifest.PER_MESH_DIRS for mesh in DIALECTS)
    return per_mesh + _SHARED_DIRS


def _optional_renderer(module_name: str):
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    return module.render


def _mesh_renderers():
    # Imported here so that a renderer's import error is reported as a build error.
    from meshobs.render import ambient_dashboards, clusters_dashboard, dashboards, global_rules, rules

    renderers = [rules.render, global_rules.render, dashboards.render, clusters_dashboard.render, ambient_dashboards.render]
    collectors = _optional_renderer("meshobs.render.collectors")
    return renderers + ([collectors] if collectors else [])


def _deploy_renderer():
    return _optional_renderer("meshobs.render.deploy")


def render(cfg: Config, dialects: Iterable[Dialect]) -> dict[str, bytes]:
    """All artefacts, sorted by path; raises BuildError naming the failing part."""
    dialects = list(dialects)
    artefacts: dict[str, bytes] = {}
    try:
        for dialect in dialects:
            for renderer in _mesh_renderers():
                _merge(artefacts, renderer(cfg, dialect), renderer)
        deploy = _deploy_renderer()
        if deploy is not None:
            _merge(artefacts, deploy(cfg, dialects, dict(artefacts)), deploy)
    except MeshobsError:
        raise
    except Exception as exc:
        raise BuildError(f"rendering failed: {type(exc).__name__}: {exc}") from exc
    artefacts[manifest.NAME] = manifest.render(artefacts, [d.name for d in dialects], __version__, cfg.cluster_label,
                                                cfg.ruler.kind)
    return dict(sorted(artefacts.items()))


def _merge(into: dict[str, bytes], new: dict[str, bytes], renderer) -> None:
    clash = sorted(set(into) & set(new))
    if clash:
        raise BuildError(f"{renderer.__module__} renders {clash[0]}, which another renderer already produced")
    for path, content in new.items():
        if not isinstance(content, bytes):
            raise BuildError(f"{renderer.__module__} rendered {path} as {type(content).__name__}, not bytes")
    into.update(new)
