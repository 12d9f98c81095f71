"""Rendered collectors for every mesh and both access-log encodings, shared by the tests here."""

from __future__ import annotations

import pytest

from meshobs import config
from meshobs.meshes import DIALECTS
from meshobs.render import collectors

MESHES = ("istio", "linkerd", "consul")


def render(mesh: str, **logging) -> dict[str, str]:
    cfg = config.from_dict({"logging": logging} if logging else {})
    return {path.removeprefix(f"collectors/{mesh}/"): data.decode() for path, data in collectors.render(cfg, DIALECTS[mesh]).items()}


@pytest.fixture(scope="session")
def rendered() -> dict[tuple[str, str], dict[str, str]]:
    """(mesh, encoding) -> {path under collectors/<mesh>/: text}."""
    return {(mesh, enc): render(mesh, access_log_encoding=enc) for mesh in MESHES for enc in ("json", "text")}
