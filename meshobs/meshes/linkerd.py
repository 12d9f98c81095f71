"""Linkerd dialect."""

from meshobs.meshes.base import Dialect

LINKERD = Dialect(name="linkerd", title="Linkerd")
