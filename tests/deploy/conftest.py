"""The default configuration rendered once per session, written like `meshobs build` writes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meshobs import build, config, writer


def render(cfg: config.Config | None = None, meshes: list[str] | None = None) -> dict[str, bytes]:
    return build.render(cfg or config.Config(), build.select_meshes(meshes))


@pytest.fixture(scope="session")
def artefacts() -> dict[str, bytes]:
    return render()


@pytest.fixture(scope="session")
def out(artefacts, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rendered")
    writer.write(artefacts, folder)
    return folder


@pytest.fixture(scope="session")
def deploy(out) -> Path:
    return out / "deploy"


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifests(deploy_dir: Path) -> list[tuple[Path, dict]]:
    """Every Kubernetes object rendered under deploy/ (kustomizations and configs excluded)."""
    found = []
    for path in sorted(deploy_dir.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or "provisioning" in path.parts or "rules" in path.parts:
            continue
        found += [(path, doc) for doc in documents(path)]
    return found
