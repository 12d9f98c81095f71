"""Consul dialect."""

from meshobs.meshes.base import Dialect

CONSUL = Dialect(name="consul", title="Consul")
