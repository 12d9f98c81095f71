"""Mesh dialects: one module per mesh, each mapping the signal model to real metric names."""

from __future__ import annotations

from meshobs.meshes.base import Dialect
from meshobs.meshes.consul import CONSUL
from meshobs.meshes.istio import ISTIO
from meshobs.meshes.linkerd import LINKERD

DIALECTS: dict[str, Dialect] = {d.name: d for d in (ISTIO, LINKERD, CONSUL)}

__all__ = ["DIALECTS", "Dialect"]
