"""`meshobs build`: every artefact of every selected mesh, rendered in memory.

Each renderer returns a mapping of relative path -> bytes; nothing here touches the disk
(the writer does). Per-mesh renderers take (config, dialect); the deploy renderer runs last
and takes the per-mesh artefacts too, so it can wrap rule files and dashboards in manifests.
"""

from __future__ import annotations

import importlib
from typing import Iterable, Sequence

from meshobs.config import Config
from meshobs.errors import BuildError, MeshobsError
from meshobs.meshes import DIALECTS, Dialect

# Folders whose whole content the build owns: files there that it no longer renders are removed.
_PER_MESH_DIRS = ("dashboards", "alerts", "collectors")
_SHARED_DIRS = ("deploy",)


def select_meshes(names: Sequence[str] | None) -> list[Dialect]:
    if not names:
        return list(DIALECTS.values())
    unknown = [n for n in names if n not in DIALECTS]
    if unknown:
        raise BuildError(f"unknown mesh {unknown[0]!r} (known: {', '.join(DIALECTS)})")
    return [DIALECTS[n] for n in dict.fromkeys(names)]


def owned_dirs(names: Sequence[str] | None) -> tuple[str, ...]:
    meshes = [d.name for d in select_meshes(names)]
    per_mesh = tuple(f"{kind}/{mesh}" for kind in _PER_MESH_DIRS for mesh in meshes)
    return per_mesh + (_SHARED_DIRS if not names else ())


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
    from meshobs.render import clusters_dashboard, dashboards, global_rules, rules

    renderers = [rules.render, global_rules.render, dashboards.render, clusters_dashboard.render]
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
    return dict(sorted(artefacts.items()))


def _merge(into: dict[str, bytes], new: dict[str, bytes], renderer) -> None:
    clash = sorted(set(into) & set(new))
    if clash:
        raise BuildError(f"{renderer.__module__} renders {clash[0]}, which another renderer already produced")
    for path, content in new.items():
        if not isinstance(content, bytes):
            raise BuildError(f"{renderer.__module__} rendered {path} as {type(content).__name__}, not bytes")
    into.update(new)
