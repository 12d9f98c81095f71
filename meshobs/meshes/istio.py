"""Istio dialect."""

from meshobs.meshes.base import Dialect

ISTIO = Dialect(name="istio", title="Istio")
